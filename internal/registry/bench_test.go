package registry_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/testenv"
)

const benchSize = 256 << 20

// writeArtifact writes a random file of benchSize bytes, its first 8 bytes set to i so each
// iteration pushes new content.
func writeArtifact(b *testing.B, dir string, i int) string {
	b.Helper()
	p := filepath.Join(dir, fmt.Sprintf("artifact-%d.bin", i))
	f, err := os.Create(p)
	require.NoError(b, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for written := 0; written < benchSize; written += len(buf) {
		_, _ = rand.Read(buf)
		if written == 0 {
			binary.LittleEndian.PutUint64(buf, uint64(i))
		}
		_, err := f.Write(buf)
		require.NoError(b, err)
	}
	return p
}

// BenchmarkRegistry256MiB pushes and pulls a 256 MiB artifact over loopback to a real MinIO.
// The numbers are in the README next to a plain cp of the same file.
func BenchmarkRegistry256MiB(b *testing.B) {
	srv := testenv.SharedMinIO(b)
	client := srv.Client(b)
	bucket := srv.Bucket(b, "bench")
	dir := b.TempDir()
	ctx := context.Background()

	for _, gz := range []bool{false, true} {
		mode := map[bool]string{false: "plain", true: "gzip"}[gz]
		b.Run("push/"+mode, func(b *testing.B) {
			reg, err := registry.New(client, registry.Options{Bucket: bucket, CacheDir: b.TempDir()})
			require.NoError(b, err)
			b.SetBytes(benchSize)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				src := writeArtifact(b, dir, i)
				b.StartTimer()
				_, err := reg.Push(ctx, src, registry.PushOptions{Name: "bench", Version: fmt.Sprintf("%s-%d-%d", mode, b.N, i), GitSHA: sha1, Gzip: gz})
				require.NoError(b, err)
				b.StopTimer()
				os.Remove(src)
				b.StartTimer()
			}
		})
		b.Run("pull/"+mode, func(b *testing.B) {
			reg, err := registry.New(client, registry.Options{Bucket: bucket, CacheDir: b.TempDir()})
			require.NoError(b, err)
			version := "pull-" + mode
			if _, err := reg.Resolve(ctx, registry.Ref{Name: "bench", Version: version}); err != nil {
				src := writeArtifact(b, dir, 999)
				_, err := reg.Push(ctx, src, registry.PushOptions{Name: "bench", Version: version, GitSHA: sha1, Gzip: gz})
				require.NoError(b, err)
				os.Remove(src)
			}
			b.SetBytes(benchSize)
			for i := 0; i < b.N; i++ {
				cache := filepath.Join(dir, "pull-cache")
				os.RemoveAll(cache)
				fresh, err := registry.New(client, registry.Options{Bucket: bucket, CacheDir: cache})
				require.NoError(b, err)
				res, err := fresh.Pull(ctx, registry.Ref{Name: "bench", Version: version}, "")
				require.NoError(b, err)
				require.False(b, res.CacheHit)
			}
		})
	}
}
