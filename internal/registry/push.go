package registry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/modelship/modelship/internal/plumbing/filedigest"
	"github.com/modelship/modelship/internal/plumbing/objstore"
)

// PushOptions name what is pushed.
type PushOptions struct {
	Name     string
	Version  string
	GitSHA   string
	Metadata map[string]string
	Gzip     bool
	// Signer, when set, signs the version once it is stored (pushed now or before), so that
	// pulls with the public key accept it.
	Signer signature.Signer
}

// PushResult says what a push did.
type PushResult struct {
	Manifest       Manifest
	AlreadyExisted bool  // the same bytes were already this version: nothing was written
	BytesUploaded  int64 // bytes sent to storage (compressed size when gzip'd)
	Signed         bool  // a signature was written
}

// Push stores the file at filePath as name@version. A version is written once: pushing it
// again with the same bytes is a no-op, with other bytes it fails with ErrVersionExists.
func (r *Registry) Push(ctx context.Context, filePath string, opts PushOptions) (*PushResult, error) {
	res, err := r.push(ctx, filePath, opts)
	if err != nil || opts.Signer == nil {
		return res, err
	}
	if err := r.Sign(ctx, res.Manifest.Name, res.Manifest.Version, opts.Signer); err != nil {
		return nil, fmt.Errorf("%s@%s is stored but unsigned: %w; push it again to sign it", res.Manifest.Name, res.Manifest.Version, err)
	}
	res.Signed = true
	return res, nil
}

func (r *Registry) push(ctx context.Context, filePath string, opts PushOptions) (*PushResult, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	if err := ValidateVersion(opts.Version); err != nil {
		return nil, err
	}
	if err := ValidateGitSHA(opts.GitSHA); err != nil {
		return nil, err
	}
	digest, size, err := filedigest.SHA256(filePath)
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

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
