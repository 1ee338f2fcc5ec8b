// Package registry keeps model artifacts on S3: immutable versions, found by version, by the
// git SHA they were built from or by an alias (champion, production) that moves, verified by sha256 on every pull, optionally stored gzip'd, with
// a local cache keyed by digest so a second pull of the same bytes transfers nothing.
//
// Layout in the bucket:
//
//	<name>/blobs/sha256/<digest>[.gz]           the artifact, content-addressed
//	<name>/versions/<version>/manifest.json      the version: digest, git SHA, metadata (written last)
//	<name>/by-sha/<git-sha>/<version>            index for lookups by commit
//	<name>/aliases.json                          alias -> version, and the log of changes (compare-and-swap)
package registry

import (
	"context"
	"errors"
	"path"
	"sync/atomic"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/registry/manifest"
)

// Errors a caller can tell apart with errors.Is.
var (
	ErrNotFound      = objstore.ErrNotFound
	ErrVersionExists = errors.New("version already exists with other content")
	ErrIntegrity     = errors.New("integrity check failed")
	ErrAmbiguous     = errors.New("ambiguous git SHA")
)

const (
	manifestSchema = 1
	// partSize bounds the memory of a streaming (gzip) upload: one part is buffered at a time.
	partSize = 16 << 20
)

// Manifest describes one pushed version. It lives in package manifest, which the Dagger module
// imports without this package's S3 client.
type Manifest = manifest.Manifest

// Options configure a Registry.
type Options struct {
	Bucket   string // default "models"
	CacheDir string // local cache of pulled artifacts by digest; required
}

// Registry is a model registry in one bucket.
type Registry struct {
	client *minio.Client
	bucket string
	stats  counters
	cache  *cache
}

type counters struct {
	cacheHits, cacheMisses, bytesDownloaded, bytesUploaded atomic.Int64
}

// Stats are counters since the Registry was made; tests and the CLI read them.
type Stats struct {
	CacheHits, CacheMisses, BytesDownloaded, BytesUploaded int64
}

// New returns a registry over client. It does not touch the network.
func New(client *minio.Client, opts Options) (*Registry, error) {
	if opts.Bucket == "" {
		opts.Bucket = "models"
	}
	if opts.CacheDir == "" {
		return nil, errors.New("registry: a cache folder is required (MODELSHIP_CACHE_DIR)")
	}
	r := &Registry{client: client, bucket: opts.Bucket}
	r.cache = &cache{dir: opts.CacheDir, next: bucketFetcher{r}, stats: &r.stats}
	return r, nil
}

// Bucket is the bucket the registry uses.
func (r *Registry) Bucket() string { return r.bucket }

// EnsureBucket creates the bucket when it is missing.
func (r *Registry) EnsureBucket(ctx context.Context) error {
	return objstore.EnsureBucket(ctx, r.client, r.bucket, false)
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	return Stats{CacheHits: r.stats.cacheHits.Load(), CacheMisses: r.stats.cacheMisses.Load(),
		BytesDownloaded: r.stats.bytesDownloaded.Load(), BytesUploaded: r.stats.bytesUploaded.Load()}
}

func manifestKey(name, version string) string {
	return path.Join(name, "versions", version, "manifest.json")
}
func shaIndexKey(name, sha, version string) string {
	return path.Join(name, "by-sha", sha, version)
}
