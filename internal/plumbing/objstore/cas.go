package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/minio/minio-go/v7"
)

// The two halves of a compare-and-swap on one object: read it with the ETag of what was read,
// then write it back only if that ETag is still the object's. The registry's aliases and the
// deploy state use them.

// ErrTooLarge is an object over the size its reader allows.
var ErrTooLarge = errors.New("object too large")

// tornReads bounds how often ReadWithETag redoes a read whose object was replaced under it.
const tornReads = 100

// ReadWithETag reads the whole object (at most limit bytes) and the ETag of exactly those bytes.
// A missing object is ErrNotFound. minio-go pins the reads of one object to its first ETag, so
// an object replaced mid-read answers 412: that is a read to redo, not a conflict to report.
func ReadWithETag(ctx context.Context, client *minio.Client, bucket, key string, limit int64) ([]byte, string, error) {
	for attempt := 0; ; attempt++ {
		raw, etag, err := readOnce(ctx, client, bucket, key, limit)
		if errors.Is(err, ErrConflict) && attempt < tornReads {
			continue
		}
		return raw, etag, err
	}
}

func readOnce(ctx context.Context, client *minio.Client, bucket, key string, limit int64) ([]byte, string, error) {
	obj, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", bucket, key, Classify(err))
	}
	defer obj.Close()
	// Stat sends the request: a missing object or bucket shows here, before any byte is read.
	info, err := obj.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", bucket, key, Classify(err))
	}
	if info.Size > limit {
		return nil, "", fmt.Errorf("%w: s3://%s/%s is %d bytes, over the %d this reader allows", ErrTooLarge, bucket, key, info.Size, limit)
	}
	raw, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", bucket, key, Classify(err))
	}
	if int64(len(raw)) > limit {
		return nil, "", fmt.Errorf("%w: s3://%s/%s is over the %d bytes this reader allows", ErrTooLarge, bucket, key, limit)
	}
	return raw, info.ETag, nil
}

// PutIfMatch writes body to key only if the object's ETag is still etag (If-Match), or, with
// etag "", only if there is no object yet (If-None-Match: *). Losing that race is ErrConflict:
// the caller reads again and redoes its change on what the other writer left.
func PutIfMatch(ctx context.Context, client *minio.Client, bucket, key string, body []byte, contentType, etag string) error {
	opts := minio.PutObjectOptions{ContentType: contentType}
	if etag == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(etag)
	}
	if _, err := client.PutObject(ctx, bucket, key, bytes.NewReader(body), int64(len(body)), opts); err != nil {
		return fmt.Errorf("write s3://%s/%s: %w", bucket, key, Classify(err))
	}
	return nil
}

// ConflictBackoff is how long a writer that lost the race waits before its attempt-th retry: a
// few random milliseconds, growing with the attempts and capped at 100, so a crowd of writers
// spreads out instead of colliding again.
func ConflictBackoff(attempt int) time.Duration {
	return time.Duration(1+rand.IntN(min(5*(attempt+1), 100))) * time.Millisecond
}
