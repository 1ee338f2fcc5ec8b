package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	sha1 = "0123456789abcdef0123456789abcdef01234567"
	sha2 = "89abcdef0123456789abcdef0123456789abcdef"
)

type fixture struct {
	reg    *registry.Registry
	client *minio.Client
	bucket string
	dir    string
}

func newRegistry(t *testing.T) *fixture {
	t.Helper()
	srv := testenv.SharedMinIO(t)
	client := srv.Client(t)
	bucket := srv.Bucket(t, "models")
	reg, err := registry.New(client, registry.Options{Bucket: bucket, CacheDir: filepath.Join(t.TempDir(), "cache")})
	require.NoError(t, err)
	return &fixture{reg: reg, client: client, bucket: bucket, dir: t.TempDir()}
}

func (f *fixture) file(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	require.NoError(t, os.WriteFile(p, content, 0o644))
	return p
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestPushThenPullByVersionAndBySHA(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			f := newRegistry(t)
			ctx := context.Background()
			content := bytes.Repeat([]byte("model weights "), 10000) // compressible
			src := f.file(t, "model.onnx", content)

			res, err := f.reg.Push(ctx, src, registry.PushOptions{Name: "digits", Version: "1.0.0", GitSHA: sha1,
				Metadata: map[string]string{"accuracy": "0.97", "framework": "onnx"}, Gzip: gz})
			require.NoError(t, err)
			assert.False(t, res.AlreadyExisted)
			assert.Equal(t, int64(len(content)), res.Manifest.Size)
			if gz {
				assert.Equal(t, "gzip", res.Manifest.Compression)
				assert.Less(t, res.Manifest.StoredSize, res.Manifest.Size/10, "stored compressed")
			} else {
				assert.Equal(t, res.Manifest.Size, res.Manifest.StoredSize)
			}

			byVersion, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "1.0.0"}, filepath.Join(f.dir, "out", "v.onnx"))
			require.NoError(t, err)
			got, err := os.ReadFile(byVersion.Path)
			require.NoError(t, err)
			assert.Equal(t, content, got)
			assert.Equal(t, "0.97", byVersion.Manifest.Metadata["accuracy"])
			assert.Equal(t, sha1, byVersion.Manifest.GitSHA)

			for _, sha := range []string{sha1, sha1[:7]} {
				bySHA, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", GitSHA: sha}, filepath.Join(f.dir, "sha.onnx"))
				require.NoError(t, err)
				assert.Equal(t, "1.0.0", bySHA.Manifest.Version)
				got, err = os.ReadFile(bySHA.Path)
				require.NoError(t, err)
				assert.Equal(t, content, got)
			}
		})
	}
}

func TestListIsNewestFirstAndLatestResolves(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	for i, v := range []string{"1", "2", "3"} {
		sha := sha1
		if i == 2 {
			sha = sha2
		}
		_, err := f.reg.Push(ctx, f.file(t, v, []byte("model "+v)), registry.PushOptions{Name: "digits", Version: v, GitSHA: sha})
		require.NoError(t, err)
	}
	list, err := f.reg.List(ctx, "digits")
	require.NoError(t, err)
	var versions []string
	for _, m := range list {
		versions = append(versions, m.Version)
	}
	assert.Equal(t, []string{"3", "2", "1"}, versions)

	latest, err := f.reg.Resolve(ctx, registry.Ref{Name: "digits", Version: "latest"})
	require.NoError(t, err)
	assert.Equal(t, "3", latest.Version)

	// Two versions from one commit: the SHA finds the newer.
	bySHA, err := f.reg.Resolve(ctx, registry.Ref{Name: "digits", GitSHA: sha1})
	require.NoError(t, err)
	assert.Equal(t, "2", bySHA.Version)

	empty, err := f.reg.List(ctx, "other")
	require.NoError(t, err)
	assert.Empty(t, empty)
	_, err = f.reg.Resolve(ctx, registry.Ref{Name: "other", Version: "latest"})
	assert.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, "has no versions")
}

func TestAVersionIsImmutable(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	a := f.file(t, "a.onnx", []byte("first model"))
	b := f.file(t, "b.onnx", []byte("second model"))
	opts := registry.PushOptions{Name: "digits", Version: "1", GitSHA: sha1}

	_, err := f.reg.Push(ctx, a, opts)
	require.NoError(t, err)

	again, err := f.reg.Push(ctx, a, opts)
	require.NoError(t, err, "the same bytes again are a no-op")
	assert.True(t, again.AlreadyExisted)
	assert.Zero(t, again.BytesUploaded)

	_, err = f.reg.Push(ctx, b, opts)
	require.ErrorIs(t, err, registry.ErrVersionExists)
	assert.ErrorContains(t, err, "push under a new version")

	res, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "1"}, "")
	require.NoError(t, err)
	got, err := os.ReadFile(res.Path)
	require.NoError(t, err)
	assert.Equal(t, "first model", string(got), "the first push still stands")
}

func TestPullRefusesAnObjectCorruptedBehindItsBack(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			f := newRegistry(t)
			ctx := context.Background()
			content := randomBytes(t, 4096)
			res, err := f.reg.Push(ctx, f.file(t, "m.onnx", content), registry.PushOptions{Name: "digits", Version: "1", GitSHA: sha1, Gzip: gz})
			require.NoError(t, err)

			// Someone with bucket access swaps the bytes.
			evil := randomBytes(t, 4096)
			_, err = f.client.PutObject(ctx, f.bucket, res.Manifest.Blob, bytes.NewReader(evil), int64(len(evil)), minio.PutObjectOptions{})
			require.NoError(t, err)

			dest := filepath.Join(f.dir, "pulled.onnx")
			_, err = f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "1"}, dest)
			require.ErrorIs(t, err, registry.ErrIntegrity)
			assert.ErrorContains(t, err, res.Manifest.Blob)
			_, statErr := os.Stat(dest)
			assert.True(t, os.IsNotExist(statErr), "nothing is written where a corrupt artifact was asked for")
		})
	}
}

func TestSecondPullOfTheSameDigestTransfersNothing(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	content := randomBytes(t, 1<<20)
	_, err := f.reg.Push(ctx, f.file(t, "m.onnx", content), registry.PushOptions{Name: "digits", Version: "1", GitSHA: sha1})
	require.NoError(t, err)
	// Version 2 has the same bytes: same digest, so pulling it after version 1 is a cache hit too.
	_, err = f.reg.Push(ctx, f.file(t, "m2.onnx", content), registry.PushOptions{Name: "digits", Version: "2", GitSHA: sha2})
	require.NoError(t, err)

	first, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "1"}, filepath.Join(f.dir, "1.onnx"))
	require.NoError(t, err)
	assert.False(t, first.CacheHit)
	assert.Equal(t, int64(len(content)), first.BytesDownloaded)

	before := f.reg.Stats()
	second, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "2"}, filepath.Join(f.dir, "2.onnx"))
	require.NoError(t, err)
	assert.True(t, second.CacheHit)
	assert.Zero(t, second.BytesDownloaded)
	after := f.reg.Stats()
	assert.Equal(t, before.BytesDownloaded, after.BytesDownloaded, "no artifact bytes moved")
	assert.Equal(t, before.CacheHits+1, after.CacheHits)

	// A damaged cache entry is not trusted: it is fetched again.
	cacheFile := findCacheFile(t, f)
	require.NoError(t, os.Remove(cacheFile))
	require.NoError(t, os.WriteFile(cacheFile, []byte("damaged"), 0o644))
	third, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "1"}, "")
	require.NoError(t, err)
	assert.False(t, third.CacheHit)
	got, err := os.ReadFile(third.Path)
	require.NoError(t, err)
	assert.Equal(t, content, got)
}

func findCacheFile(t *testing.T, f *fixture) string {
	t.Helper()
	res, err := f.reg.Pull(context.Background(), registry.Ref{Name: "digits", Version: "1"}, "")
	require.NoError(t, err)
	return res.Path
}

func TestBadNamesNeverBecomeKeys(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	src := f.file(t, "m.onnx", []byte("x"))
	long := strings.Repeat("a", 200)
	cases := []registry.PushOptions{
		{Name: "../x", Version: "1", GitSHA: sha1},
		{Name: "a/b", Version: "1", GitSHA: sha1},
		{Name: "", Version: "1", GitSHA: sha1},
		{Name: "Digits", Version: "1", GitSHA: sha1},
		{Name: "a..b", Version: "1", GitSHA: sha1},
		{Name: long, Version: "1", GitSHA: sha1},
		{Name: "digits", Version: "../1", GitSHA: sha1},
		{Name: "digits", Version: "1/2", GitSHA: sha1},
		{Name: "digits", Version: "", GitSHA: sha1},
		{Name: "digits", Version: "latest", GitSHA: sha1},
		{Name: "digits", Version: long, GitSHA: sha1},
		{Name: "digits", Version: "1", GitSHA: ""},
		{Name: "digits", Version: "1", GitSHA: "main"},
		{Name: "digits", Version: "1", GitSHA: "0123456"},
		{Name: "digits", Version: "1", GitSHA: strings.ToUpper(sha1)},
		{Name: "digits", Version: "1", GitSHA: "g123456789abcdef0123456789abcdef01234567"},
	}
	for _, opts := range cases {
		_, err := f.reg.Push(ctx, src, opts)
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%+v", opts)
	}
	for _, ref := range []registry.Ref{{Name: "../x", Version: "1"}, {Name: "digits", Version: "../../etc"}, {Name: "digits", GitSHA: "abc"},
		{Name: "digits", GitSHA: "../../x"}, {Name: "digits", Version: "1", GitSHA: sha1}} {
		_, err := f.reg.Pull(ctx, ref, "")
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%+v", ref)
	}
	var keys []string
	for obj := range f.client.ListObjects(ctx, f.bucket, minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, obj.Key)
	}
	assert.Empty(t, keys, "nothing was written")
}

func TestMissingVersionsAndCommitsAreNotFound(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	_, err := f.reg.Push(ctx, f.file(t, "m.onnx", []byte("m")), registry.PushOptions{Name: "digits", Version: "1", GitSHA: sha1})
	require.NoError(t, err)

	_, err = f.reg.Pull(ctx, registry.Ref{Name: "digits", Version: "9"}, "")
	require.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, "model ls")

	_, err = f.reg.Pull(ctx, registry.Ref{Name: "digits", GitSHA: sha2}, "")
	require.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, "no version of model \"digits\" was pushed from git SHA "+sha2)

	_, err = f.reg.Push(ctx, filepath.Join(f.dir, "absent.onnx"), registry.PushOptions{Name: "digits", Version: "2", GitSHA: sha1})
	assert.ErrorContains(t, err, "absent.onnx")
}

func TestAnAmbiguousSHAPrefixIsRefused(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	other := "0123456f" + strings.Repeat("0", 32)
	for v, sha := range map[string]string{"1": sha1, "2": other} {
		_, err := f.reg.Push(ctx, f.file(t, v, []byte(v)), registry.PushOptions{Name: "digits", Version: v, GitSHA: sha})
		require.NoError(t, err)
	}
	_, err := f.reg.Resolve(ctx, registry.Ref{Name: "digits", GitSHA: "0123456"})
	assert.ErrorIs(t, err, registry.ErrAmbiguous)
	m, err := f.reg.Resolve(ctx, registry.Ref{Name: "digits", GitSHA: "01234567"})
	require.NoError(t, err)
	assert.Equal(t, "1", m.Version)
}

func TestAnUnreachableEndpointIsNamed(t *testing.T) {
	cfg := objstore.Config{Endpoint: "http://" + testenv.FreeAddr(t), AccessKey: "k", SecretKey: "s", Region: "us-east-1"}
	client, err := objstore.NewClient(cfg)
	require.NoError(t, err)
	reg, err := registry.New(client, registry.Options{Bucket: "models", CacheDir: t.TempDir()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20e9)
	defer cancel()
	_, err = reg.Resolve(ctx, registry.Ref{Name: "digits", Version: "1"})
	require.ErrorIs(t, err, objstore.ErrUnreachable)
	assert.ErrorContains(t, err, "s3://models/digits/versions/1/manifest.json")
	err = reg.EnsureBucket(ctx)
	assert.ErrorIs(t, err, objstore.ErrUnreachable)
}
