// Package manifest holds what the registry says about a model version, in the form the CLI
// prints it. It depends on nothing but the standard library, so the Dagger module reads the
// CLI's JSON through these very types instead of keeping a copy of them.
package manifest

import "time"

// Manifest describes one pushed version.
type Manifest struct {
	SchemaVersion int               `json:"schema_version"`
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	GitSHA        string            `json:"git_sha"`
	SHA256        string            `json:"sha256"`
	Size          int64             `json:"size"`
	Compression   string            `json:"compression"`
	StoredSize    int64             `json:"stored_size"`
	Blob          string            `json:"blob"`
	Filename      string            `json:"filename,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
}

// How a lookup chose a version.
const (
	ResolvedByVersion = "version"
	ResolvedByLatest  = "latest"
	ResolvedByGitSHA  = "git-sha"
	ResolvedByPin     = "pin"
	// ResolvedByAlias begins the ResolvedBy of a lookup by alias, which also names the alias
	// and the version it pointed at then: see AliasResolution.
	ResolvedByAlias = "alias"
)

// AliasResolution is the ResolvedBy of a lookup by alias: "alias production → 1.2.0". An alias
// moves, so the record of a pull keeps where it pointed at the time.
func AliasResolution(alias, version string) string {
	return ResolvedByAlias + " " + alias + " → " + version
}

// Resolution is what `modelship --json model resolve` prints: the version a pull would fetch,
// and how it was chosen (one of the ResolvedBy values, or an AliasResolution).
type Resolution struct {
	Manifest   Manifest `json:"manifest"`
	ResolvedBy string   `json:"resolved_by"`
}
