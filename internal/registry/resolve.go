package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
	"github.com/modelship/modelship/internal/registry/manifest"
)

// Ref selects a version: by Version (or "latest"), by GitSHA (full or at least 7 digits), or
// by Alias (the version the alias points at when looked up). Give one of the three.
type Ref struct {
	Name    string
	Version string
	GitSHA  string
	Alias   string
	// Pinned is the version a GitSHA falls back to when no version was pushed from that
	// commit: the one the repository pins (modelship.json), so a code-only commit ships the
	// pinned model instead of failing.
	Pinned string
}

func (ref Ref) String() string {
	if ref.Alias != "" {
		return ref.Name + "@alias:" + ref.Alias
	}
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

// Lookup finds the manifest a Ref points at and says how (one of manifest.ResolvedBy*).
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
	case ref.Alias != "" && (ref.Version != "" || ref.GitSHA != "" || ref.Pinned != ""):
		return nil, "", fmt.Errorf("%w: alias %q selects the version by itself; give an alias, a version or a git SHA (with its pin), not several", ErrInvalidName, ref.Alias)
	case ref.Alias != "":
		m, err := r.resolveAlias(ctx, ref.Name, ref.Alias)
		if err != nil {
			return nil, "", err
		}
		return m, manifest.AliasResolution(ref.Alias, m.Version), nil
	case ref.GitSHA != "":
		m, err := r.resolveSHA(ctx, ref.Name, ref.GitSHA)
		if errors.Is(err, ErrNotFound) && ref.Pinned != "" {
			pinned, perr := r.manifest(ctx, ref.Name, ref.Pinned)
			if perr != nil {
				return nil, "", fmt.Errorf("no version of model %q was pushed from git SHA %s, and the pinned version: %w", ref.Name, ref.GitSHA, perr)
			}
			return pinned, manifest.ResolvedByPin, nil
		}
		return m, manifest.ResolvedByGitSHA, err
	case ref.Version == "" || ref.Version == Latest:
		all, err := r.List(ctx, ref.Name)
		if err != nil {
			return nil, "", err
		}
		if len(all) == 0 {
			return nil, "", fmt.Errorf("%w: model %q has no versions in s3://%s; push one with `modelship model push`", ErrNotFound, ref.Name, r.bucket)
		}
		return &all[0], manifest.ResolvedByLatest, nil
	default:
		if err := ValidateVersion(ref.Version); err != nil {
			return nil, "", err
		}
		m, err := r.manifest(ctx, ref.Name, ref.Version)
		return m, manifest.ResolvedByVersion, err
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
	m, _, err := r.manifestRaw(ctx, name, version)
	return m, err
}

// manifestRaw is the manifest and its exact bytes, which a model signature covers.
func (r *Registry) manifestRaw(ctx context.Context, name, version string) (*Manifest, []byte, error) {
	key := manifestKey(name, version)
	obj, err := r.client.GetObject(ctx, r.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest s3://%s/%s: %w", r.bucket, key, objstore.Classify(err))
	}
	defer obj.Close()
	raw, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		err = objstore.Classify(err)
		if errors.Is(err, ErrNotFound) {
			return nil, nil, fmt.Errorf("%w: model %s version %s is not in s3://%s; `modelship model ls --name %s` lists what is", ErrNotFound, name, version, r.bucket, name)
		}
		return nil, nil, fmt.Errorf("read manifest s3://%s/%s: %w", r.bucket, key, err)
	}
	var m Manifest
	if err := strictjson.Decode(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: manifest s3://%s/%s is not valid JSON: %v", ErrIntegrity, r.bucket, key, err)
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
		return nil, nil, fmt.Errorf("%w: manifest s3://%s/%s: %v", ErrIntegrity, r.bucket, key, err)
	}
	return &m, raw, nil
}
