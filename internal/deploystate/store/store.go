// Package store keeps deploy_state.json files in an S3 bucket. Every write is a compare-and-swap
// on the object's ETag, so concurrent pipelines never lose updates.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/plumbing/objstore"
)

// maxAttempts bounds the compare-and-swap retries of one Update; with the capped backoff
// below, a writer keeps trying for several seconds against a crowd of others.
const maxAttempts = 100

// ErrConflict is returned when an update kept losing the compare-and-swap race.
var ErrConflict = objstore.ErrConflict

// Store reads and writes deploy_state.json files in one bucket.
type Store struct {
	client *minio.Client
	bucket string
	now    func() time.Time
}

// New returns a store over client; bucket defaults to "deploy-state".
func New(client *minio.Client, bucket string) *Store {
	if bucket == "" {
		bucket = "deploy-state"
	}
	return &Store{client: client, bucket: bucket, now: func() time.Time { return time.Now().UTC() }}
}

// WithClock returns a copy of the store that reads the time from now (for tests and replays).
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.now = now
	return &c
}

// Bucket is where the state files live.
func (s *Store) Bucket() string { return s.bucket }

// Key is the object key of an environment's state.
func (s *Store) Key(env string) string { return path.Join(env, deploystate.FileName) }

// EnsureBucket creates the bucket when missing and turns versioning on where the server has it,
// so every earlier state can be read back.
func (s *Store) EnsureBucket(ctx context.Context) error {
	return objstore.EnsureBucket(ctx, s.client, s.bucket, true)
}

// LoadOptions tune a read.
type LoadOptions struct {
	// MaxAge refuses a state last written longer ago than this (the guide's stale-state guard);
	// zero turns the check off.
	MaxAge time.Duration
}

// Load reads and validates an environment's state. A missing file is deploystate.ErrNoState.
func (s *Store) Load(ctx context.Context, env string, opts LoadOptions) (*deploystate.State, error) {
	st, _, err := s.load(ctx, env)
	if err != nil {
		return nil, err
	}
	if opts.MaxAge > 0 {
		if age := s.now().Sub(st.UpdatedAt); age > opts.MaxAge {
			return nil, fmt.Errorf("%w: s3://%s/%s was last written %s ago (at %s), over the allowed %s; check the bucket and environment, or raise --max-state-age",
				deploystate.ErrStale, s.bucket, s.Key(env), age.Round(time.Second), st.UpdatedAt.Format(time.RFC3339), opts.MaxAge)
		}
	}
	return st, nil
}

// maxStateBytes bounds what a read of deploy_state.json holds; the state keeps bounded lists
// (deploystate.MaxHistory and friends), so a file near this is not one this package wrote.
const maxStateBytes = 16 << 20

// load returns the state and its ETag ("" with deploystate.ErrNoState when there is none).
func (s *Store) load(ctx context.Context, env string) (*deploystate.State, string, error) {
	if err := deploystate.ValidateEnvironment(env); err != nil {
		return nil, "", err
	}
	key := s.Key(env)
	raw, etag, err := objstore.ReadWithETag(ctx, s.client, s.bucket, key, maxStateBytes)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		return nil, "", fmt.Errorf("%w: s3://%s/%s does not exist; environment %s has never been deployed", deploystate.ErrNoState, s.bucket, key, env)
	case errors.Is(err, objstore.ErrNoSuchBucket):
		return nil, "", fmt.Errorf("%w: bucket %q does not exist yet, so environment %s has never been deployed (the first deploy creates it; check --state-bucket if one was expected)", deploystate.ErrNoState, s.bucket, env)
	case err != nil:
		return nil, "", err
	}
	st, err := deploystate.Decode(raw, env)
	if err != nil {
		return nil, "", fmt.Errorf("s3://%s/%s: %w; nothing was deployed from it — fix the file or restore an earlier version of it (the bucket is versioned)", s.bucket, key, err)
	}
	return st, etag, nil
}

// Update applies change to the environment's state (a new State when none exists) and writes it
// back with a compare-and-swap, retrying on a lost race with the freshly read state. change may
// be called several times. If change returns an error the state is not written — except that a
// change may return ErrHalted after halting the state, and that halt is written before the
// ErrHalted is returned, so it sticks.
func (s *Store) Update(ctx context.Context, env string, change func(*deploystate.State) error) (*deploystate.State, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		st, etag, err := s.load(ctx, env)
		if errors.Is(err, deploystate.ErrNoState) {
			st, etag = deploystate.New(env), ""
		} else if err != nil {
			return nil, err
		}
		wasHalted := st.Halt != nil
		changeErr := change(st)
		if changeErr != nil && !(errors.Is(changeErr, deploystate.ErrHalted) && !wasHalted && st.Halt != nil) {
			return nil, changeErr
		}
		st.UpdatedAt = s.now()
		if err := st.Validate(env); err != nil {
			return nil, fmt.Errorf("refusing to write environment %s: %w", env, err)
		}
		err = s.put(ctx, env, st, etag)
		if errors.Is(err, objstore.ErrConflict) {
			// Someone else wrote first: back off a little and redo the change on their state.
			time.Sleep(objstore.ConflictBackoff(attempt))
			continue
		}
		if err != nil {
			return nil, err
		}
		if changeErr != nil {
			return st, changeErr
		}
		return st, nil
	}
	return nil, fmt.Errorf("%w: s3://%s/%s changed under %d attempts in a row; try again", ErrConflict, s.bucket, s.Key(env), maxAttempts)
}

func (s *Store) put(ctx context.Context, env string, st *deploystate.State, etag string) error {
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode deploy state of %s: %w", env, err)
	}
	return objstore.PutIfMatch(ctx, s.client, s.bucket, s.Key(env), append(body, '\n'), "application/json", etag)
}

// Resume lifts the halt of env.
func (s *Store) Resume(ctx context.Context, env, by, reason string) (*deploystate.State, error) {
	return s.Update(ctx, env, func(st *deploystate.State) error { return st.Resume(by, reason, s.now()) })
}

// AdmitRollback records a rollback within budget, or halts env and returns deploystate.ErrHalted.
func (s *Store) AdmitRollback(ctx context.Context, env string, rb deploystate.Rollback) (*deploystate.State, error) {
	return s.Update(ctx, env, func(st *deploystate.State) error { return st.AdmitRollback(rb, s.now()) })
}

// RollbackFailed marks env's rollback admitted at `at` as failed: logged, not counted.
func (s *Store) RollbackFailed(ctx context.Context, env string, at time.Time, why string) (*deploystate.State, error) {
	return s.Update(ctx, env, func(st *deploystate.State) error { return st.RollbackFailed(at, why) })
}

// RecordDeploy makes d the live deployment of env.
func (s *Store) RecordDeploy(ctx context.Context, env string, d deploystate.Deployment) (*deploystate.State, error) {
	return s.Update(ctx, env, func(st *deploystate.State) error { return st.RecordDeploy(d) })
}

// EvidenceKey is where a stage's evidence.json is kept beside the environment's state.
func (s *Store) EvidenceKey(env, stage string, at time.Time) string {
	return path.Join(env, "evidence", at.UTC().Format("20060102T150405.000000000Z")+"-"+stage+".json")
}

// URI names an object of the state bucket.
func (s *Store) URI(key string) string { return "s3://" + s.bucket + "/" + key }

// PutEvidence stores a stage's evidence under key, once: it is never overwritten.
func (s *Store) PutEvidence(ctx context.Context, key string, data []byte) error {
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	if _, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		return fmt.Errorf("write evidence s3://%s/%s: %w", s.bucket, key, objstore.Classify(err))
	}
	return nil
}
