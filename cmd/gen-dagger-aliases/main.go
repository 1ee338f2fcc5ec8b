// Command gen-dagger-aliases writes ci/internal/dagger/zz_typecheck.go: the type aliases that let
// ci/ type-check against dagger.io/dagger without an engine (see internal/daggeralias).
//
//	cd ci && go run ../cmd/gen-dagger-aliases -dir "$(go list -m -f '{{.Dir}}' dagger.io/dagger)" \
//	  -version "$(go list -m -f '{{.Version}}' dagger.io/dagger)" -out internal/dagger/zz_typecheck.go
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/modelship/modelship/internal/atomicfile"
	"github.com/modelship/modelship/internal/daggeralias"
)

func main() {
	var opts daggeralias.Options
	var out string
	flag.StringVar(&opts.Dir, "dir", "", "directory of dagger.io/dagger at the pinned version (required)")
	flag.StringVar(&opts.Version, "version", "", "its version, for the header (required)")
	flag.StringVar(&opts.Tag, "tag", "modelship_typecheck", "build tag of the generated file")
	flag.StringVar(&out, "out", "", "file to write (default: stdout)")
	flag.Parse()
	if opts.Dir == "" || opts.Version == "" {
		fmt.Fprintln(os.Stderr, "gen-dagger-aliases: -dir and -version are required")
		os.Exit(2)
	}
	src, err := daggeralias.Generate(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-dagger-aliases:", err)
		os.Exit(1)
	}
	if out == "" {
		os.Stdout.Write(src)
		return
	}
	if err := atomicfile.Write(out, src); err != nil {
		fmt.Fprintln(os.Stderr, "gen-dagger-aliases:", err)
		os.Exit(1)
	}
}
