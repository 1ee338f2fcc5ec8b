package registry

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/modelship/modelship/internal/plumbing/filedigest"
)

// cache keeps verified artifacts by digest in a local folder, around another fetcher: a digest
// already there is re-verified and placed at once; anything else is fetched into the cache first.
type cache struct {
	dir   string
	next  fetcher
	stats *counters
}

// path is where the cache keeps m's bytes.
func (c *cache) path(m *Manifest) string { return filepath.Join(c.dir, "sha256", m.SHA256) }

func (c *cache) fetch(ctx context.Context, m *Manifest, dest string) (fetched, error) {
	cached := c.path(m)
	var got fetched
	if digest, size, err := filedigest.SHA256(cached); err == nil && digest == m.SHA256 && size == m.Size {
		got.cacheHit = true
		c.stats.cacheHits.Add(1)
	} else {
		c.stats.cacheMisses.Add(1)
		if got, err = c.next.fetch(ctx, m, cached); err != nil {
			return got, err
		}
	}
	if dest != cached {
		if err := placeFile(cached, dest); err != nil {
			return got, err
		}
	}
	return got, nil
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
