package daggeralias_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/daggeralias"
	"github.com/modelship/modelship/internal/projectpath"
)

const aliasFile = "ci/internal/dagger/zz_typecheck.go"

// daggerSDK finds dagger.io/dagger at the version ci/go.mod pins.
func daggerSDK(t *testing.T) (dir, version string) {
	t.Helper()
	ci := projectpath.Join(t, "ci")
	download := exec.Command("go", "mod", "download", "dagger.io/dagger")
	download.Dir = ci
	if out, err := download.CombinedOutput(); err != nil {
		t.Fatalf("go mod download dagger.io/dagger (needs the Go module proxy): %v\n%s", err, out)
	}
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", "dagger.io/dagger")
	list.Dir = ci
	out, err := list.Output()
	require.NoError(t, err)
	fields := strings.Fields(string(out))
	require.Len(t, fields, 2)
	return fields[0], fields[1]
}

func TestTheCommittedAliasesMatchThePinnedSDK(t *testing.T) {
	dir, version := daggerSDK(t)
	assert.Equal(t, "v0.21.9", version, "DESIGN.md pins Dagger v0.21.9")
	want, err := daggeralias.Generate(daggeralias.Options{Dir: dir, Version: version, Tag: "modelship_typecheck"})
	require.NoError(t, err)
	got, err := os.ReadFile(projectpath.Join(t, aliasFile))
	require.NoError(t, err)
	assert.True(t, string(got) == string(want), "%s is stale: regenerate it (see cmd/gen-dagger-aliases)", aliasFile)
	assert.True(t, regexp.MustCompile(`\n\tContainer\s+= upstream\.Container\n`).Match(want), "types are aliased")
	assert.True(t, regexp.MustCompile(`\n\tLoadable\[T any\]\s+= upstream\.Loadable\[T\]\n`).Match(want), "generic types keep their parameters")
	assert.True(t, regexp.MustCompile(`\n\tReturnTypeAny\s+= upstream\.ReturnTypeAny\n`).Match(want), "constants are re-exported")
}

func TestGenerateRefusesAPackageThatIsNotTheSDK(t *testing.T) {
	_, err := daggeralias.Generate(daggeralias.Options{Dir: t.TempDir(), Version: "v0", Tag: "x"})
	assert.ErrorContains(t, err, "no exported types")
}

func TestTheModuleUsesNoStandaloneOnlyAPI(t *testing.T) {
	problems, err := daggeralias.CheckModuleSource(projectpath.Join(t, "ci"))
	require.NoError(t, err)
	assert.Empty(t, problems)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc f() { dag.Host().Directory(\".\") }\n"), 0o644))
	problems, err = daggeralias.CheckModuleSource(dir)
	require.NoError(t, err)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0], "dag.Host()")
}

// moduleFuncs parses ci/main.go: the constructor and the exported methods of *Modelship.
func moduleFuncs(t *testing.T) (*token.FileSet, *ast.File, map[string]*ast.FuncDecl) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, projectpath.Join(t, "ci/main.go"), nil, parser.ParseComments)
	require.NoError(t, err)
	funcs := map[string]*ast.FuncDecl{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !fn.Name.IsExported() {
			continue
		}
		if fn.Recv == nil && fn.Name.Name != "New" {
			continue
		}
		funcs[fn.Name.Name] = fn
	}
	return fset, f, funcs
}

// commentBefore returns the comment group that ends on the line before pos.
func commentBefore(fset *token.FileSet, f *ast.File, pos token.Pos) string {
	line := fset.Position(pos).Line
	for _, cg := range f.Comments {
		if fset.Position(cg.End()).Line == line-1 {
			return cg.Text()
		}
	}
	return ""
}

func TestEveryFunctionAndArgumentIsDocumented(t *testing.T) {
	fset, f, funcs := moduleFuncs(t)
	for _, name := range []string{"New", "TestQuality", "QualityReports", "BuildImage", "Deploy", "Rollback", "Pipeline", "Serve", "State", "Cli", "Tools"} {
		require.Contains(t, funcs, name, "the module has %s", name)
	}
	for name, fn := range funcs {
		if name != "New" {
			assert.NotNil(t, fn.Doc, "%s has a doc comment", name)
		}
		for _, field := range fn.Type.Params.List {
			for _, n := range field.Names {
				if n.Name == "ctx" {
					continue
				}
				assert.NotEmpty(t, strings.TrimSpace(commentBefore(fset, f, n.Pos())), "argument %s of %s is documented", n.Name, name)
			}
		}
	}
}

func TestPragmasSayWhatEachFunctionIs(t *testing.T) {
	fset, f, funcs := moduleFuncs(t)
	doc := func(name string) string { return funcs[name].Doc.Text() }
	assert.Contains(t, doc("TestQuality"), "+check")
	for _, name := range []string{"Deploy", "Rollback", "Pipeline", "State"} {
		assert.Contains(t, doc(name), `+cache="never"`, "%s has side effects or reads live state", name)
	}
	var source *ast.Ident
	for _, field := range funcs["New"].Type.Params.List {
		for _, n := range field.Names {
			if n.Name == "source" {
				source = n
			}
		}
	}
	require.NotNil(t, source)
	assert.Contains(t, commentBefore(fset, f, source.Pos()), `+defaultPath="/"`)
}

// The engine version the module records in evidence is the one dagger.json pins.
func TestEvidenceNamesThePinnedEngine(t *testing.T) {
	raw, err := os.ReadFile(projectpath.Join(t, "dagger.json"))
	require.NoError(t, err)
	var cfg struct {
		EngineVersion string `json:"engineVersion"`
	}
	require.NoError(t, json.Unmarshal(raw, &cfg))
	src, err := os.ReadFile(projectpath.Join(t, "ci/main.go"))
	require.NoError(t, err)
	assert.Contains(t, string(src), `engineVersion = "`+cfg.EngineVersion+`"`)
	assert.Equal(t, "v0.21.9", cfg.EngineVersion)
}
