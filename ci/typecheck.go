//go:build modelship_typecheck

package main

import "github.com/modelship/modelship/ci/internal/dagger"

// dag stands in for the client the engine's codegen declares in dagger.gen.go, so the module
// type-checks without an engine (`go vet -tags modelship_typecheck ./...`; see
// internal/daggeralias). The engine never sets the tag, so its own files replace these.
var dag *dagger.Client

func main() {}
