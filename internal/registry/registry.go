// Package registry keeps model artifacts on S3: immutable versions, found by version or by the
// git SHA they were built from, verified by sha256 on every pull, optionally stored gzip'd, with
// a local cache keyed by digest so a second pull of the same bytes transfers nothing.
//
// Layout in the bucket:
//
//	<name>/blobs/sha256/<digest>[.gz]           the artifact, content-addressed
//	<name>/versions/<version>/manifest.json      the version: digest, git SHA, metadata (written last)
//	<name>/by-sha/<git-sha>/<version>            index for lookups by commit
package registry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
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

// Options configure a Registry.
type Options struct {
	Bucket   string // default "models"
	CacheDir string // local cache of pulled artifacts by digest; required
}

// Registry is a model registry in one bucket.
type Registry struct {
	client   *minio.Client
	bucket   string
	cacheDir string
	stats    counters
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
	return &Registry{client: client, bucket: opts.Bucket, cacheDir: opts.CacheDir}, nil
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

// PushOptions name what is pushed.
type PushOptions struct {
	Name     string
	Version  string
	GitSHA   string
	Metadata map[string]string
	Gzip     bool
}

// PushResult says what a push did.
type PushResult struct {
	Manifest       Manifest
	AlreadyExisted bool  // the same bytes were already this version: nothing was written
	BytesUploaded  int64 // bytes sent to storage (compressed size when gzip'd)
}

// Push stores the file at filePath as name@version. A version is written once: pushing it
// again with the same bytes is a no-op, with other bytes it fails with ErrVersionExists.
func (r *Registry) Push(ctx context.Context, filePath string, opts PushOptions) (*PushResult, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	if err := ValidateVersion(opts.Version); err != nil {
		return nil, err
	}
	if err := ValidateGitSHA(opts.GitSHA); err != nil {
		return nil, err
	}
	digest, size, err := hashFile(filePath)
	if err != nil {
		return nil, err
	}
	if existing, err := r.manifest(ctx, opts.Name, opts.Version); err == nil {
		return r.samePush(ctx, existing, digest)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}

	m := Manifest{SchemaVersion: manifestSchema, Name: opts.Name, Version: opts.Version, GitSHA: opts.GitSHA,
		SHA256: digest, Size: size, Compression: "none", Filename: filepath.Base(filePath),
		Metadata: opts.Metadata, CreatedAt: time.Now().UTC()}
	m.Blob = path.Join(opts.Name, "blobs", "sha256", digest)
	if opts.Gzip {
		m.Compression, m.Blob = "gzip", m.Blob+".gz"
	}
	stored, uploaded, err := r.uploadBlob(ctx, filePath, m)
	if err != nil {
		return nil, err
	}
	m.StoredSize = stored
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest of %s@%s: %w", m.Name, m.Version, err)
	}
	// The manifest is the commit point: written only if no one wrote this version meanwhile.
	putOpts := minio.PutObjectOptions{ContentType: "application/json"}
	putOpts.SetMatchETagExcept("*")
	key := manifestKey(m.Name, m.Version)
	if _, err := r.client.PutObject(ctx, r.bucket, key, bytes.NewReader(body), int64(len(body)), putOpts); err != nil {
		err = objstore.Classify(err)
		if errors.Is(err, objstore.ErrConflict) {
			existing, rerr := r.manifest(ctx, m.Name, m.Version)
			if rerr != nil {
				return nil, rerr
			}
			return r.samePush(ctx, existing, digest)
		}
		return nil, fmt.Errorf("write manifest s3://%s/%s: %w", r.bucket, key, err)
	}
	if err := r.indexSHA(ctx, m); err != nil {
		return nil, err
	}
	r.stats.bytesUploaded.Add(uploaded)
	return &PushResult{Manifest: m, BytesUploaded: uploaded}, nil
}

// samePush settles a push of a version that already exists.
func (r *Registry) samePush(ctx context.Context, existing *Manifest, digest string) (*PushResult, error) {
	if existing.SHA256 != digest {
		return nil, fmt.Errorf("%w: %s@%s holds sha256 %s, the file is %s; versions are immutable, push under a new version",
			ErrVersionExists, existing.Name, existing.Version, existing.SHA256, digest)
	}
	// A crash between manifest and index leaves the index missing; a retried push mends it.
	if err := r.indexSHA(ctx, *existing); err != nil {
		return nil, err
	}
	return &PushResult{Manifest: *existing, AlreadyExisted: true}, nil
}

func (r *Registry) indexSHA(ctx context.Context, m Manifest) error {
	key := shaIndexKey(m.Name, m.GitSHA, m.Version)
	if _, err := r.client.PutObject(ctx, r.bucket, key, strings.NewReader(m.Version), int64(len(m.Version)),
		minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		return fmt.Errorf("index %s@%s by git SHA at s3://%s/%s: %w", m.Name, m.Version, r.bucket, key, objstore.Classify(err))
	}
	return nil
}

// uploadBlob streams the file (gzip'd on the fly if asked) to its content address. A blob that
// is already there has these very bytes, so a conflict there is success.
func (r *Registry) uploadBlob(ctx context.Context, filePath string, m Manifest) (stored, uploaded int64, err error) {
	f, err := os.Open(filePath)
	if err != nil {
		return 0, 0, fmt.Errorf("open model file: %w", err)
	}
	defer f.Close()
	// Two parts in flight at a time bound an upload's memory to 2 x partSize, whatever its size.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: partSize, NumThreads: 2,
		UserMetadata: map[string]string{"Sha256": m.SHA256}}
	opts.SetMatchETagExcept("*")
	var body io.Reader = f
	size := m.Size
	if m.Compression == "gzip" {
		pr, pw := io.Pipe()
		go func() {
			zw := gzip.NewWriter(pw)
			_, err := io.Copy(zw, f)
			if err == nil {
				err = zw.Close()
			}
			pw.CloseWithError(err)
		}()
		defer pr.Close()
		body, size = pr, -1
	}
	counted := &countingReader{r: body}
	info, err := r.client.PutObject(ctx, r.bucket, m.Blob, counted, size, opts)
	if err != nil {
		err = objstore.Classify(err)
		if errors.Is(err, objstore.ErrConflict) {
			st, serr := r.client.StatObject(ctx, r.bucket, m.Blob, minio.StatObjectOptions{})
			if serr != nil {
				return 0, 0, fmt.Errorf("stat existing blob s3://%s/%s: %w", r.bucket, m.Blob, objstore.Classify(serr))
			}
			return st.Size, 0, nil
		}
		return 0, 0, fmt.Errorf("upload %s@%s to s3://%s/%s: %w", m.Name, m.Version, r.bucket, m.Blob, err)
	}
	return info.Size, counted.n, nil
}

// Ref selects a version: by Version (or "latest"), or by GitSHA (full or at least 7 digits).
type Ref struct {
	Name    string
	Version string
	GitSHA  string
	// Pinned is the version a GitSHA falls back to when no version was pushed from that
	// commit: the one the repository pins (modelship.json), so a code-only commit ships the
	// pinned model instead of failing.
	Pinned string
}

// How a Ref was resolved, as PullResult.ResolvedBy says.
const (
	ResolvedByVersion = "version"
	ResolvedByLatest  = "latest"
	ResolvedByGitSHA  = "git-sha"
	ResolvedByPin     = "pin"
)

func (ref Ref) String() string {
	if ref.GitSHA != "" {
		return ref.Name + "@sha:" + ref.GitSHA
	}
	return ref.Name + "@" + ref.Version
}

// Resolve finds the manifest a Ref points at.
func (r *Registry) Resolve(ctx context.Context, ref Ref) (*Manifest, error) {
	m, _, err := r.Lookup(ctx, ref)
	return m, err
}

// Lookup finds the manifest a Ref points at and says how (one of the ResolvedBy values).
func (r *Registry) Lookup(ctx context.Context, ref Ref) (*Manifest, string, error) {
	if err := ValidateName(ref.Name); err != nil {
		return nil, "", err
	}
	if ref.Pinned != "" {
		if err := ValidateVersion(ref.Pinned); err != nil {
			return nil, "", fmt.Errorf("pinned version: %w", err)
		}
	}
	switch {
	case ref.GitSHA != "" && ref.Version != "":
		return nil, "", fmt.Errorf("%w: give a version or a git SHA, not both", ErrInvalidName)
	case ref.GitSHA != "":
		m, err := r.resolveSHA(ctx, ref.Name, ref.GitSHA)
		if errors.Is(err, ErrNotFound) && ref.Pinned != "" {
			pinned, perr := r.manifest(ctx, ref.Name, ref.Pinned)
			if perr != nil {
				return nil, "", fmt.Errorf("no version of model %q was pushed from git SHA %s, and the pinned version: %w", ref.Name, ref.GitSHA, perr)
			}
			return pinned, ResolvedByPin, nil
		}
		return m, ResolvedByGitSHA, err
	case ref.Version == "" || ref.Version == Latest:
		all, err := r.List(ctx, ref.Name)
		if err != nil {
			return nil, "", err
		}
		if len(all) == 0 {
			return nil, "", fmt.Errorf("%w: model %q has no versions in s3://%s; push one with `modelship model push`", ErrNotFound, ref.Name, r.bucket)
		}
		return &all[0], ResolvedByLatest, nil
	default:
		if err := ValidateVersion(ref.Version); err != nil {
			return nil, "", err
		}
		m, err := r.manifest(ctx, ref.Name, ref.Version)
		return m, ResolvedByVersion, err
	}
}

func (r *Registry) resolveSHA(ctx context.Context, name, sha string) (*Manifest, error) {
	if err := validateSHAPrefix(sha); err != nil {
		return nil, err
	}
	prefix := path.Join(name, "by-sha") + "/" + sha
	type hit struct{ sha, version string }
	var hits []hit
	for obj := range r.client.ListObjects(ctx, r.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("look up %s by git SHA %s in s3://%s: %w", name, sha, r.bucket, objstore.Classify(obj.Err))
		}
		parts := strings.Split(strings.TrimPrefix(obj.Key, name+"/by-sha/"), "/")
		if len(parts) == 2 {
			hits = append(hits, hit{parts[0], parts[1]})
		}
	}
	if len(hits) == 0 {
		return nil, fmt.Errorf("%w: no version of model %q was pushed from git SHA %s; push it with --git-sha, or pull by --version", ErrNotFound, name, sha)
	}
	var newest *Manifest
	for _, h := range hits {
		if h.sha != hits[0].sha {
			return nil, fmt.Errorf("%w: %s matches commits %s and %s; give more digits", ErrAmbiguous, sha, hits[0].sha, h.sha)
		}
		m, err := r.manifest(ctx, name, h.version)
		if err != nil {
			return nil, err
		}
		if newest == nil || m.CreatedAt.After(newest.CreatedAt) {
			newest = m
		}
	}
	return newest, nil
}

// List returns every version of a model, newest first.
func (r *Registry) List(ctx context.Context, name string) ([]Manifest, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	var out []Manifest
	prefix := name + "/versions/"
	for obj := range r.client.ListObjects(ctx, r.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list versions of %s in s3://%s: %w", name, r.bucket, objstore.Classify(obj.Err))
		}
		if !strings.HasSuffix(obj.Key, "/manifest.json") {
			continue
		}
		version := strings.TrimSuffix(strings.TrimPrefix(obj.Key, prefix), "/manifest.json")
		m, err := r.manifest(ctx, name, version)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].Version > out[j].Version
	})
	return out, nil
}

var digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (r *Registry) manifest(ctx context.Context, name, version string) (*Manifest, error) {
	key := manifestKey(name, version)
	obj, err := r.client.GetObject(ctx, r.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", r.bucket, key, objstore.Classify(err))
	}
	defer obj.Close()
	raw, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		err = objstore.Classify(err)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: model %s version %s is not in s3://%s; `modelship model ls --name %s` lists what is", ErrNotFound, name, version, r.bucket, name)
		}
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", r.bucket, key, err)
	}
	var m Manifest
	if err := strictjson.Decode(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest s3://%s/%s is not valid JSON: %v", ErrIntegrity, r.bucket, key, err)
	}
	switch {
	case m.SchemaVersion != manifestSchema:
		err = fmt.Errorf("schema_version %d, this modelship reads %d", m.SchemaVersion, manifestSchema)
	case m.Name != name || m.Version != version:
		err = fmt.Errorf("it names %s@%s", m.Name, m.Version)
	case !digestRe.MatchString(m.SHA256):
		err = fmt.Errorf("sha256 %q is not a hex digest", m.SHA256)
	case !strings.HasPrefix(m.Blob, name+"/blobs/sha256/"+m.SHA256):
		err = fmt.Errorf("blob %q is not this model's blob of %s", m.Blob, m.SHA256)
	case m.Compression != "none" && m.Compression != "gzip":
		err = fmt.Errorf("compression %q is unknown", m.Compression)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: manifest s3://%s/%s: %v", ErrIntegrity, r.bucket, key, err)
	}
	return &m, nil
}

// PullResult says where the artifact is and whether it came from the cache.
type PullResult struct {
	Manifest        Manifest
	Path            string
	CacheHit        bool
	BytesDownloaded int64
	// ResolvedBy says how the version was chosen: version, latest, git-sha or pin.
	ResolvedBy string
}

// Pull fetches the artifact ref points at into dest (a file path; "" leaves it in the cache and
// returns that path). Every byte is checked against the manifest's sha256 before it is used.
func (r *Registry) Pull(ctx context.Context, ref Ref, dest string) (*PullResult, error) {
	m, how, err := r.Lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	cached := filepath.Join(r.cacheDir, "sha256", m.SHA256)
	res := &PullResult{Manifest: *m, Path: cached, ResolvedBy: how}
	if digest, size, err := hashFile(cached); err == nil && digest == m.SHA256 && size == m.Size {
		res.CacheHit = true
		r.stats.cacheHits.Add(1)
	} else {
		r.stats.cacheMisses.Add(1)
		n, err := r.download(ctx, m, cached)
		if err != nil {
			return nil, err
		}
		res.BytesDownloaded = n
	}
	if dest != "" {
		if err := placeFile(cached, dest); err != nil {
			return nil, err
		}
		res.Path = dest
	}
	return res, nil
}

// download streams the blob into the cache, verifying size and digest before it is renamed in.
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

// placeFile puts a verified cache file at dest atomically: a hard link when it can, else a copy.
func placeFile(src, dest string) error {
	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", filepath.Base(dest), time.Now().UnixNano()))
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", dest, err)
		}
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dest, err)
	}
	return nil
}

func copyFile(src, dest string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
