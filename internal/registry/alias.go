package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// Aliases name a role a version plays (champion, production, ...) so that people and pipelines
// ask for the role, not the number. One object per model holds them all, with the log of every
// change: <name>/aliases.json. Every change is a compare-and-swap on that object's ETag, so two
// people moving aliases at once never lose each other's move.

const (
	aliasesSchema = 1
	// AliasLogLimit is how many changes aliases.json keeps in its log: the newest, so the file
	// stays small however often aliases move. The bucket's own versioning, where it is on,
	// keeps the rest.
	AliasLogLimit = 200
	// aliasAttempts bounds the compare-and-swap retries of one change; with the capped backoff
	// below, a writer keeps trying for several seconds against a crowd of others.
	aliasAttempts = 100
	// aliasesMaxBytes bounds a read of aliases.json: AliasLogLimit changes with the longest
	// by and reason allowed fit well inside it.
	aliasesMaxBytes  = 4 << 20
	maxByLength      = 256
	maxReasonLength  = 2048
	aliasActionSet   = "set"
	aliasActionUnset = "rm"
)

// ErrInvalidInput marks an alias change the caller must fix: no --by or --reason.
var ErrInvalidInput = errors.New("invalid input")

// AliasSet is a model's aliases.json: where each alias points and how it got there.
type AliasSet struct {
	SchemaVersion int                    `json:"schema_version"`
	Model         string                 `json:"model"`
	Aliases       map[string]AliasTarget `json:"aliases"`
	// Log holds the newest AliasLogLimit changes, oldest first.
	Log []AliasChange `json:"log,omitempty"`
}

// AliasTarget is the version an alias points at, and who pointed it there when.
type AliasTarget struct {
	Version string    `json:"version"`
	SetBy   string    `json:"set_by"`
	SetAt   time.Time `json:"set_at"`
}

// AliasChange is one entry of the log: an alias set (From is the version it left, "" when it
// is new) or removed (To is "").
type AliasChange struct {
	Action string    `json:"action"` // "set" or "rm"
	Alias  string    `json:"alias"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

func aliasesKey(name string) string { return path.Join(name, "aliases.json") }

// Aliases returns a model's aliases and their log; a model that never had one has an empty set.
func (r *Registry) Aliases(ctx context.Context, name string) (*AliasSet, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	set, _, err := r.loadAliases(ctx, name)
	return set, err
}

// SetAlias points alias at version (an existing version of the model), recording who and why.
func (r *Registry) SetAlias(ctx context.Context, name, alias, version, by, reason string) (*AliasChange, error) {
	if err := validateAliasChange(name, alias, by, reason); err != nil {
		return nil, err
	}
	if err := ValidateVersion(version); err != nil {
		return nil, err
	}
	// Versions are never deleted, so one that exists now still exists when the change lands.
	if _, err := r.manifest(ctx, name, version); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: cannot point alias %q of model %s at version %s: there is no such version in s3://%s; push it first, or pick one `modelship model ls --name %s` lists",
				ErrNotFound, alias, name, version, r.bucket, name)
		}
		return nil, fmt.Errorf("alias %q of model %s: %w", alias, name, err)
	}
	return r.changeAliases(ctx, name, func(set *AliasSet, now time.Time) (AliasChange, error) {
		c := AliasChange{Action: aliasActionSet, Alias: alias, From: set.Aliases[alias].Version, To: version, By: by, Reason: reason, At: now}
		set.Aliases[alias] = AliasTarget{Version: version, SetBy: by, SetAt: now}
		return c, nil
	})
}

// RemoveAlias deletes alias, recording who and why. An alias the model does not have is ErrNotFound.
func (r *Registry) RemoveAlias(ctx context.Context, name, alias, by, reason string) (*AliasChange, error) {
	if err := validateAliasChange(name, alias, by, reason); err != nil {
		return nil, err
	}
	return r.changeAliases(ctx, name, func(set *AliasSet, now time.Time) (AliasChange, error) {
		target, ok := set.Aliases[alias]
		if !ok {
			return AliasChange{}, fmt.Errorf("%w: model %s has no alias %q to remove; `modelship model alias ls --name %s` lists its aliases",
				ErrNotFound, name, alias, name)
		}
		delete(set.Aliases, alias)
		return AliasChange{Action: aliasActionUnset, Alias: alias, From: target.Version, By: by, Reason: reason, At: now}, nil
	})
}

// resolveAlias is the version alias points at now.
func (r *Registry) resolveAlias(ctx context.Context, name, alias string) (*Manifest, error) {
	if err := ValidateAlias(alias); err != nil {
		return nil, err
	}
	set, _, err := r.loadAliases(ctx, name)
	if err != nil {
		return nil, err
	}
	target, ok := set.Aliases[alias]
	if !ok {
		return nil, fmt.Errorf("%w: model %s has no alias %q in s3://%s; `modelship model alias ls --name %s` lists its aliases, `modelship model alias set` makes one",
			ErrNotFound, name, alias, r.bucket, name)
	}
	m, err := r.manifest(ctx, name, target.Version)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: alias %q of model %s points at version %s, which is gone from s3://%s (removed outside modelship); point the alias at a version that exists with `modelship model alias set`",
			ErrNotFound, alias, name, target.Version, r.bucket)
	}
	return m, err
}

func validateAliasChange(name, alias, by, reason string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateAlias(alias); err != nil {
		return err
	}
	if strings.TrimSpace(by) == "" || strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: changing alias %q of model %s needs who (--by) and why (--reason); they go in its log", ErrInvalidInput, alias, name)
	}
	if len(by) > maxByLength || len(reason) > maxReasonLength {
		return fmt.Errorf("%w: --by is at most %d bytes and --reason at most %d", ErrInvalidInput, maxByLength, maxReasonLength)
	}
	return nil
}

// changeAliases applies change to the model's aliases (an empty set when there are none yet),
// logs what it returns and writes the result with a compare-and-swap, redoing the change on the
// fresh copy when another writer got in first. change may be called several times; when it
// returns an error nothing is written.
func (r *Registry) changeAliases(ctx context.Context, name string, change func(*AliasSet, time.Time) (AliasChange, error)) (*AliasChange, error) {
	key := aliasesKey(name)
	for attempt := 0; attempt < aliasAttempts; attempt++ {
		set, etag, err := r.loadAliases(ctx, name)
		if err != nil {
			return nil, err
		}
		c, err := change(set, time.Now().UTC())
		if err != nil {
			return nil, err
		}
		set.Log = append(set.Log, c)
		if n := len(set.Log); n > AliasLogLimit {
			set.Log = set.Log[n-AliasLogLimit:]
		}
		if err := set.validate(name); err != nil {
			return nil, fmt.Errorf("refusing to write s3://%s/%s: %w", r.bucket, key, err)
		}
		body, err := json.MarshalIndent(set, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode s3://%s/%s: %w", r.bucket, key, err)
		}
		err = objstore.PutIfMatch(ctx, r.client, r.bucket, key, append(body, '\n'), "application/json", etag)
		if errors.Is(err, objstore.ErrConflict) {
			// Someone else wrote first: back off a little and redo the change on their copy.
			time.Sleep(objstore.ConflictBackoff(attempt))
			continue
		}
		if err != nil {
			return nil, err
		}
		return &c, nil
	}
	return nil, fmt.Errorf("%w: s3://%s/%s changed under %d attempts in a row; try again", objstore.ErrConflict, r.bucket, key, aliasAttempts)
}

// loadAliases reads and validates the model's aliases.json with its ETag; none yet is an empty
// set and "". A file that fails validation is ErrIntegrity, and nothing is done with it.
func (r *Registry) loadAliases(ctx context.Context, name string) (*AliasSet, string, error) {
	key := aliasesKey(name)
	raw, etag, err := objstore.ReadWithETag(ctx, r.client, r.bucket, key, aliasesMaxBytes)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		return &AliasSet{SchemaVersion: aliasesSchema, Model: name, Aliases: map[string]AliasTarget{}}, "", nil
	case errors.Is(err, objstore.ErrTooLarge):
		return nil, "", corruptAliases(err)
	case err != nil:
		return nil, "", err
	}
	var set AliasSet
	if err := strictjson.Decode(raw, &set); err != nil {
		return nil, "", corruptAliases(fmt.Errorf("s3://%s/%s is not valid JSON: %w", r.bucket, key, err))
	}
	if err := set.validate(name); err != nil {
		return nil, "", corruptAliases(fmt.Errorf("s3://%s/%s: %w", r.bucket, key, err))
	}
	return &set, etag, nil
}

// corruptAliases is the error of an aliases.json that cannot be trusted, with the way out.
func corruptAliases(err error) error {
	return fmt.Errorf("%w: %w; no alias was resolved or changed from it — fix the file, or delete it to start over (its aliases and log go with it)", ErrIntegrity, err)
}

// validate checks everything a reader relies on: the schema, the model, every alias and
// version a valid name, every change complete.
func (s *AliasSet) validate(name string) error {
	switch {
	case s.SchemaVersion != aliasesSchema:
		return fmt.Errorf("schema_version %d, this modelship reads %d", s.SchemaVersion, aliasesSchema)
	case s.Model != name:
		return fmt.Errorf("it is the aliases file of model %q", s.Model)
	case s.Aliases == nil:
		return errors.New("it has no \"aliases\" object")
	case len(s.Log) > AliasLogLimit:
		return fmt.Errorf("its log holds %d changes, over the %d kept", len(s.Log), AliasLogLimit)
	}
	for alias, t := range s.Aliases {
		if err := ValidateAlias(alias); err != nil {
			return err
		}
		if err := ValidateVersion(t.Version); err != nil {
			return fmt.Errorf("alias %q: %w", alias, err)
		}
		if t.SetBy == "" || t.SetAt.IsZero() {
			return fmt.Errorf("alias %q does not say who set it when", alias)
		}
	}
	for i, c := range s.Log {
		if err := c.validate(); err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
	}
	return nil
}

func (c AliasChange) validate() error {
	if err := ValidateAlias(c.Alias); err != nil {
		return err
	}
	switch c.Action {
	case aliasActionSet:
		if err := ValidateVersion(c.To); err != nil {
			return fmt.Errorf("set %q: %w", c.Alias, err)
		}
	case aliasActionUnset:
		if c.To != "" {
			return fmt.Errorf("rm %q names a version it moved to", c.Alias)
		}
	default:
		return fmt.Errorf("action %q is neither %q nor %q", c.Action, aliasActionSet, aliasActionUnset)
	}
	if c.From != "" {
		if err := ValidateVersion(c.From); err != nil {
			return fmt.Errorf("%s %q: %w", c.Action, c.Alias, err)
		}
	}
	if c.By == "" || c.Reason == "" || c.At.IsZero() {
		return fmt.Errorf("%s %q does not say who, why and when", c.Action, c.Alias)
	}
	return nil
}
