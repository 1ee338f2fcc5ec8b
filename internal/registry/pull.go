package registry

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/plumbing/objstore"
)

// PullResult says where the artifact is and whether it came from the cache.
type PullResult struct {
	Manifest        Manifest
	Path            string
	CacheHit        bool
	BytesDownloaded int64
	// ResolvedBy says how the version was chosen: version, latest, git-sha, pin, or
	// "alias production → 1.2.0" (manifest.AliasResolution).
	ResolvedBy string
}

// Pull fetches the artifact ref points at into dest (a file path; "" leaves it in the cache and
// returns that path). Every byte is checked against the manifest's sha256 before it is used.
func (r *Registry) Pull(ctx context.Context, ref Ref, dest string) (*PullResult, error) {
	m, how, err := r.Lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	if dest == "" {
		dest = r.cache.path(m)
	}
	got, err := r.cache.fetch(ctx, m, dest)
	if err != nil {
		return nil, err
	}
	return &PullResult{Manifest: *m, Path: dest, ResolvedBy: how, CacheHit: got.cacheHit, BytesDownloaded: got.downloaded}, nil
}

// fetcher writes a version's verified bytes to dest. The bucket is one; the local cache is
// another that wraps it, so a second pull of a digest transfers nothing.
type fetcher interface {
	fetch(ctx context.Context, m *Manifest, dest string) (fetched, error)
}

// fetched says what a fetch transferred.
type fetched struct {
	downloaded int64
	cacheHit   bool
}

// bucketFetcher downloads from the registry's bucket.
type bucketFetcher struct{ r *Registry }

func (b bucketFetcher) fetch(ctx context.Context, m *Manifest, dest string) (fetched, error) {
	n, err := b.r.download(ctx, m, dest)
	return fetched{downloaded: n}, err
}

// download streams the blob to dest, verifying size and digest before it is renamed in.
func (r *Registry) download(ctx context.Context, m *Manifest, cached string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return 0, fmt.Errorf("create model cache %s: %w", filepath.Dir(cached), err)
	}
	obj, err := r.client.GetObject(ctx, r.bucket, m.Blob, minio.GetObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("download %s@%s from s3://%s/%s: %w", m.Name, m.Version, r.bucket, m.Blob, objstore.Classify(err))
	}
	defer obj.Close()
	counted := &countingReader{r: obj}
	var body io.Reader = counted
	if m.Compression == "gzip" {
		zr, err := gzip.NewReader(counted)
		if err != nil {
			return counted.n, r.downloadErr(m, err)
		}
		defer zr.Close()
		body = zr
	}
	tmp, err := os.CreateTemp(filepath.Dir(cached), ".pull-*")
	if err != nil {
		return 0, fmt.Errorf("write to model cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), body)
	r.stats.bytesDownloaded.Add(counted.n)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return counted.n, r.downloadErr(m, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 || size != m.Size {
		return counted.n, fmt.Errorf("%w: %s@%s from s3://%s/%s has sha256 %s and %d bytes, the manifest says %s and %d; the stored object was changed or corrupted — push the model again under a new version",
			ErrIntegrity, m.Name, m.Version, r.bucket, m.Blob, got, size, m.SHA256, m.Size)
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return counted.n, fmt.Errorf("write to model cache: %w", err)
	}
	return counted.n, nil
}

func (r *Registry) downloadErr(m *Manifest, err error) error {
	err = objstore.Classify(err)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s@%s: its manifest names s3://%s/%s, which is gone: %w", ErrIntegrity, m.Name, m.Version, r.bucket, m.Blob, err)
	}
	var gzErr = errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF)
	if gzErr {
		return fmt.Errorf("%w: %s@%s: s3://%s/%s is not valid gzip: %w", ErrIntegrity, m.Name, m.Version, r.bucket, m.Blob, err)
	}
	return fmt.Errorf("download %s@%s from s3://%s/%s: %w", m.Name, m.Version, r.bucket, m.Blob, err)
}
