// Package moduletest checks the Dagger module's source as the engine reads it. It lives apart
// from package main, whose generated client panics at init outside an engine session.
package moduletest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The engine turns doc comments into `dagger call --help` and pragmas into behaviour; these
// tests read the module's source the way the engine does, so a missing doc or pragma fails here
// rather than on a user's machine.

// moduleSource parses the module's own files (not the generated bindings, not tests).
func moduleSource(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("../*.go")
	require.NoError(t, err)
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") || strings.HasSuffix(p, ".gen.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
	}
	require.NotEmpty(t, files)
	return fset, files
}

// function is one function the engine exposes: the constructor or an exported method.
type function struct {
	decl *ast.FuncDecl
	file *ast.File
}

func moduleFunctions(t *testing.T) (*token.FileSet, map[string]function) {
	fset, files := moduleSource(t)
	funcs := map[string]function{}
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !fn.Name.IsExported() || (fn.Recv == nil && fn.Name.Name != "New") {
				continue
			}
			name := fn.Name.Name
			if fn.Recv != nil {
				recv := receiverType(fn)
				if !ast.IsExported(recv) {
					continue // methods of unexported types (errors) are not functions the engine exposes
				}
				name = recv + "." + name
			}
			funcs[name] = function{decl: fn, file: f}
		}
	}
	return fset, funcs
}

func receiverType(fn *ast.FuncDecl) string {
	t := fn.Recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	return t.(*ast.Ident).Name
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
	fset, funcs := moduleFunctions(t)
	for _, name := range []string{"New", "Modelship.TestQuality", "Modelship.QualityReports", "Modelship.BuildImage",
		"Modelship.Deploy", "Modelship.Rollback", "Modelship.Ship", "Modelship.Serve", "Modelship.State",
		"Modelship.Resume", "Modelship.EvaluateProduction", "Modelship.Cli", "Modelship.Tools", "Stage.Sbom",
		"Modelship.WithStorage", "Modelship.WithRegistry", "Modelship.WithWebhook", "Modelship.WithBaseImages"} {
		require.Contains(t, funcs, name, "the module has %s", name)
	}
	for name, fn := range funcs {
		if name != "New" {
			assert.NotNil(t, fn.decl.Doc, "%s has a doc comment", name)
		}
		for _, field := range fn.decl.Type.Params.List {
			for _, n := range field.Names {
				if n.Name == "ctx" {
					continue
				}
				doc := commentBefore(fset, fn.file, n.Pos())
				assert.NotEmpty(t, strings.TrimSpace(doc), "argument %s of %s is documented", n.Name, name)
				// Pragmas are lines that start with "+" (a "+" inside a sentence, as in libstdc++, is not).
				if text, _, found := strings.Cut("\n"+doc, "\n+"); found {
					// A doc, a blank line, then the pragmas: the engine keeps pragmas out of --help.
					assert.True(t, strings.HasSuffix(text, "\n"), "argument %s of %s: a blank // line between its doc and its pragmas", n.Name, name)
				}
			}
		}
	}
}

func TestPragmasSayWhatEachFunctionIs(t *testing.T) {
	fset, funcs := moduleFunctions(t)
	doc := func(name string) string { return funcs[name].decl.Doc.Text() }
	for _, name := range []string{"TestQuality", "Lint", "UnitTest", "Scan"} {
		assert.Contains(t, doc("Modelship."+name), "+check", name)
	}
	for _, name := range []string{"Deploy", "Rollback", "Ship", "State", "Resume", "EvaluateProduction"} {
		assert.Contains(t, doc("Modelship."+name), `+cache="never"`, "%s has side effects or reads live state", name)
	}
	found := false
	for _, field := range funcs["New"].decl.Type.Params.List {
		for _, n := range field.Names {
			if n.Name == "source" {
				found = true
				assert.Contains(t, commentBefore(fset, funcs["New"].file, n.Pos()), `+defaultPath="/"`)
			}
		}
	}
	assert.True(t, found, "New takes the project as source")
}

// The v0.21 CLI hides root functions named like core fields ("pipeline" was one): none of ours may be.
func TestNoFunctionIsNamedLikeACoreField(t *testing.T) {
	_, funcs := moduleFunctions(t)
	for name := range funcs {
		_, method, _ := strings.Cut(name, ".")
		assert.NotContains(t, []string{"Pipeline", "With", "Container", "Directory", "Host", "Version"}, method)
	}
}

// No target argument is repeated: the deploy target is set once, before the function.
func TestTargetArgumentsAppearOnlyInTheConstructor(t *testing.T) {
	_, funcs := moduleFunctions(t)
	targetArgs := []string{"dockerSocket", "dockerHost", "kubeconfig", "namespace", "publish"}
	for name, fn := range funcs {
		for _, field := range fn.decl.Type.Params.List {
			for _, n := range field.Names {
				if name != "New" {
					assert.NotContains(t, targetArgs, n.Name, "%s repeats a target argument", name)
				}
			}
		}
	}
}

func daggerJSON(t *testing.T) (engineVersion string) {
	t.Helper()
	raw, err := os.ReadFile("../../dagger.json")
	require.NoError(t, err)
	var cfg struct {
		EngineVersion string `json:"engineVersion"`
	}
	require.NoError(t, json.Unmarshal(raw, &cfg))
	return cfg.EngineVersion
}

// The engine version the module records in evidence is the one dagger.json pins.
func TestEvidenceNamesThePinnedEngine(t *testing.T) {
	src, err := os.ReadFile("../main.go")
	require.NoError(t, err)
	assert.Contains(t, string(src), `engineVersion = "`+daggerJSON(t)+`"`)
}

// apiMethods lists "Type.Method" for every exported method of an exported type in a generated
// Dagger client file.
func apiMethods(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	require.NoError(t, err)
	methods := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv == nil || !fn.Name.IsExported() {
			continue
		}
		// Client is the SDK's connection, not part of the engine's API; its helpers differ.
		if recv := receiverType(fn); ast.IsExported(recv) && recv != "Client" {
			methods[recv+"."+fn.Name.Name] = true
		}
	}
	return methods
}

// standaloneOnly is the API the standalone SDK has and a module's client does not: the host,
// the engine and its cache, and volumes other than cache volumes.
var standaloneOnly = regexp.MustCompile(`^(Engine\w*|Host|Volume)\.|\.(\w*(Engine[^V]|Engine$)\w*|Host|LoadHostFromID|\w*[^e]Volume\w*|Volume\w*)$`)

// The committed bindings are what `dagger develop` generates for the engine dagger.json names:
// their API is exactly dagger.io/dagger's at that version, less the standalone-only part. Bindings
// generated by another engine add or lack functions, and this fails until they are regenerated.
func TestTheCommittedBindingsMatchTheEngineInDaggerJSON(t *testing.T) {
	version := daggerJSON(t)
	out, err := exec.Command("go", "mod", "download", "-json", "dagger.io/dagger@"+version).Output()
	require.NoError(t, err, "go mod download dagger.io/dagger@%s (needs the Go module proxy)", version)
	var mod struct{ Dir string }
	require.NoError(t, json.Unmarshal(out, &mod))

	sdk := apiMethods(t, filepath.Join(mod.Dir, "dagger.gen.go"))
	bindings := apiMethods(t, filepath.Join("..", "internal", "dagger", "dagger.gen.go"))
	var missing, extra []string
	for m := range sdk {
		if !bindings[m] && !standaloneOnly.MatchString(m) {
			missing = append(missing, m)
		}
	}
	for m := range bindings {
		if !sdk[m] && !strings.HasSuffix(m, ".UnmarshalJSON") {
			extra = append(extra, m)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	assert.Empty(t, missing, "dagger.io/dagger %s has these and the bindings do not: run `dagger develop` with a %s engine", version, version)
	assert.Empty(t, extra, "the bindings have these and dagger.io/dagger %s does not: run `dagger develop` with a %s engine", version, version)
	assert.Greater(t, len(bindings), 500, "the bindings hold the core API")
	assert.True(t, standaloneOnly.MatchString("Query.Host") && standaloneOnly.MatchString("Container.WithMountedVolume") &&
		!standaloneOnly.MatchString("Query.CacheVolume") && !standaloneOnly.MatchString("ModuleSource.EngineVersion"),
		"the standalone-only pattern keeps cache volumes and the engine version")
}

// The engine uploads only the root module's files dagger.json includes; a package of the root
// module the ci module needs but the include lacks builds here and fails on every engine. The
// include stays short: ci/ imports only light packages of the root, and the tools are built
// from the toolchain directory, not from the module's upload.
func TestTheModuleUploadsEveryRootPackageItBuildsWith(t *testing.T) {
	uploaded := includeMatcher(t)
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{.Module.Path}}{{end}}", "..").Output()
	require.NoError(t, err, "go list the ci module's dependencies")
	const root = "github.com/modelship/modelship"
	var used []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, mod, _ := strings.Cut(line, " ")
		if mod != root {
			continue
		}
		used = append(used, pkg)
		dir := strings.TrimPrefix(pkg, root+"/")
		assert.True(t, uploaded(dir), "ci/ builds with %s, but dagger.json's include does not upload %s", pkg, dir)
	}
	// The engine's `go mod tidy` also resolves what those packages' own tests import.
	out, err = exec.Command("go", append([]string{"list", "-f", `{{join .TestImports "\n"}}{{"\n"}}{{join .XTestImports "\n"}}`}, used...)...).Output()
	require.NoError(t, err, "go list the tests' imports of %v", used)
	for _, pkg := range strings.Fields(string(out)) {
		dir, ok := strings.CutPrefix(pkg, root+"/")
		if !ok {
			continue
		}
		assert.True(t, uploaded(dir), "a test of a package ci/ builds with imports %s, which dagger.json's include does not upload; the engine's go mod tidy fails on it", pkg)
	}
	assert.Contains(t, used, root+"/internal/registry/manifest", "the module reads `model resolve` through the CLI's type")
	assert.Contains(t, used, root+"/internal/deploystate", "the module reads `state show` through the CLI's type")
}

// includeMatcher reads dagger.json's include as the engine applies it: in order, the last
// pattern that matches a path decides, and a "!" pattern leaves the path out.
func includeMatcher(t *testing.T) func(path string) bool {
	raw, err := os.ReadFile("../../dagger.json")
	require.NoError(t, err)
	var cfg struct {
		Include []string `json:"include"`
	}
	require.NoError(t, json.Unmarshal(raw, &cfg))
	matches := func(pattern, p string) bool {
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for _, part := range strings.Split(p, "/") {
				if ok, _ := filepath.Match(strings.TrimSuffix(rest, "/"), part); ok {
					return true
				}
			}
			return false
		}
		if strings.Contains(pattern, "**/") {
			dir, file, _ := strings.Cut(pattern, "**/")
			ok, _ := filepath.Match(file, filepath.Base(p))
			return strings.HasPrefix(p, dir) && ok
		}
		return p == pattern || strings.HasPrefix(p, strings.TrimSuffix(pattern, "/")+"/")
	}
	return func(p string) bool {
		in := false
		for _, inc := range cfg.Include {
			pattern, out := strings.CutPrefix(inc, "!")
			if matches(pattern, p) {
				in = !out
			}
		}
		return in
	}
}

// The include uploads what ci/ compiles with and nothing the tools are built from: the tools
// come from the toolchain directory (content-keyed), so a change to the server or the CLI must
// not change the module's own source, which would rebuild the module on every such change.
func TestTheIncludeLeavesTheToolsOut(t *testing.T) {
	uploaded := includeMatcher(t)
	for _, p := range []string{"internal/pipeline/pipeline.go", "internal/project/project.go", "internal/project/modelship.schema.json"} {
		assert.True(t, uploaded(p), "dagger.json's include must upload %s", p)
	}
	for _, p := range []string{"serving/server.go", "serving/Dockerfile", "cmd/modelship/main.go", "internal/gate/gate.go", "tests/quality_test.go", "examples/wine-classifier/modelship.json"} {
		assert.False(t, uploaded(p), "dagger.json's include must not upload %s", p)
	}
}
