// Package deploystate keeps deploy_state.json: what is live in an environment, what was live
// before, the rollbacks, and the halt that stops the pipeline after too many of them. Every
// write is a compare-and-swap on the object's ETag, so concurrent pipelines never lose updates,
// and a file that fails validation is never acted on.
package deploystate

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/pipeline"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// FileName is the object name of the state in each environment's folder.
const FileName = "deploy_state.json"

// SchemaVersion is the deploy_state.json format this package reads and writes.
const SchemaVersion = 1

// Bounds on what a state file keeps.
const (
	MaxHistory   = 50
	MaxRollbacks = 100
	MaxResumes   = 50
	MaxRollouts  = 50
)

// Rollback budget: more than RollbackBudget rollbacks within RollbackWindow halt the environment.
const (
	RollbackBudget = 2
	RollbackWindow = time.Hour
)

// Errors a caller can tell apart with errors.Is.
var (
	ErrInvalidState = errors.New("invalid deploy state")
	ErrNoState      = errors.New("no deploy state")
	// ErrNothingToRollBackTo: the state exists but records no deployment a rollback could restore.
	ErrNothingToRollBackTo = errors.New("nothing to roll back to")
	ErrHalted              = errors.New("environment halted")
	ErrStale               = errors.New("deploy state is stale")
	ErrInvalidInput        = errors.New("invalid input")
)

// State is the content of one environment's deploy_state.json.
type State struct {
	SchemaVersion int          `json:"schema_version"`
	Environment   string       `json:"environment"`
	Current       *Deployment  `json:"current,omitempty"`
	History       []Deployment `json:"history"`
	Rollbacks     []Rollback   `json:"rollbacks"`
	Halt          *Halt        `json:"halt,omitempty"`
	Resumes       []Resume     `json:"resumes"`
	// Rollouts are the canary and shadow rollouts, newest last, with every step and its analysis:
	// promoted, aborted (the stable release got all the traffic back) or refused.
	Rollouts  []Rollout `json:"rollouts,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Deployment is one version that went live.
type Deployment struct {
	GitSHA       string    `json:"git_sha"`
	Image        string    `json:"image"`
	ModelName    string    `json:"model_name"`
	ModelVersion string    `json:"model_version"`
	DeployedAt   time.Time `json:"deployed_at"`
	PipelineRun  string    `json:"pipeline_run,omitempty"`
	Target       string    `json:"target,omitempty"`
	ImageID      string    `json:"image_id,omitempty"`
	Evidence     string    `json:"evidence,omitempty"`
	RolledBack   bool      `json:"rolled_back,omitempty"` // replaced by a rollback; never a rollback target
	// Smoke is the inference this deployment passed before it took traffic; a rollback to it runs
	// the same one, so it need not be given again (and fits this model, whatever the project's is).
	Smoke *SmokeSample `json:"smoke,omitempty"`
	// NoSmoke records a deployment that took traffic without a smoke inference (--no-smoke).
	NoSmoke bool `json:"no_smoke,omitempty"`
	// Gate is the quality gate this release passed, when the deploy was given its report: what
	// a promotion out of this environment requires.
	Gate *GateRecord `json:"gate,omitempty"`
	// PromotedFrom links the deployment in another environment this one is a promotion of.
	PromotedFrom *Promotion `json:"promoted_from,omitempty"`
	// Signature is the image signature and provenance checked before it rolled out; nil for an
	// image deployed without one (--require-signature=false).
	Signature *SignatureRecord `json:"signature,omitempty"`
}

// SignatureRecord is what deploy verified of an image before rolling it out.
type SignatureRecord struct {
	Digest      string    `json:"digest"`       // the image verified and deployed, repository@sha256:...
	KeySHA256   string    `json:"key_sha256"`   // of the public key (PEM) it verified with
	GitSHA      string    `json:"git_sha"`      // the commit its SLSA provenance names
	ModelSHA256 string    `json:"model_sha256"` // the model its provenance names
	SBOM        bool      `json:"sbom"`         // a signed CycloneDX SBOM is attached
	At          time.Time `json:"at"`
}

// GateRecord is the quality gate a deployed release passed.
type GateRecord struct {
	Passed       bool      `json:"passed"`
	Summary      string    `json:"summary"`       // the metrics against their floors, one line
	ReportSHA256 string    `json:"report_sha256"` // of the quality-report.json the deploy was given
	At           time.Time `json:"at"`            // when the gate ran
}

// Promotion names the deployment a promotion copied: the same image digest and model version,
// its evidence, and when it went live there.
type Promotion struct {
	Environment string    `json:"environment"`
	DeployedAt  time.Time `json:"deployed_at"`
	Evidence    string    `json:"evidence,omitempty"`
	PipelineRun string    `json:"pipeline_run,omitempty"`
}

// SmokeSample is one input row and the class the model must predict for it.
type SmokeSample struct {
	Input []float32 `json:"input"`
	Label int       `json:"label"`
}

// Rollback is one rollback: when, from what, to what, and why.
type Rollback struct {
	At          time.Time   `json:"at"`
	From        *Deployment `json:"from,omitempty"`
	To          Deployment  `json:"to"`
	Reason      string      `json:"reason"`
	PipelineRun string      `json:"pipeline_run,omitempty"`
	Evidence    string      `json:"evidence,omitempty"`
	// Failed is set when the redeploy failed its checks: the environment never went back, so
	// the attempt is logged but does not count against the budget.
	Failed string `json:"failed,omitempty"`
}

// Halt records why the environment stopped taking deploys and rollbacks.
type Halt struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Resume records a person lifting a halt.
type Resume struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	Halt   Halt      `json:"halt"`
}

var (
	envRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,62})$`)
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidateEnvironment checks an environment name before it becomes part of an object key.
func ValidateEnvironment(env string) error {
	if !envRe.MatchString(env) {
		return fmt.Errorf("%w: environment %q: use 1-63 lower-case letters, digits, '-' or '_' (e.g. production)", ErrInvalidInput, env)
	}
	return nil
}

// New is the empty state of an environment that has never been deployed.
func New(env string) *State {
	return &State{SchemaVersion: SchemaVersion, Environment: env, History: []Deployment{}, Rollbacks: []Rollback{}, Resumes: []Resume{}}
}

// Validate checks everything a deploy or rollback would rely on.
func (s *State) Validate(env string) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.SchemaVersion != SchemaVersion {
		add("schema_version is %d; this modelship reads %d", s.SchemaVersion, SchemaVersion)
	}
	if s.Environment != env {
		add("it belongs to environment %q, not %q", s.Environment, env)
	}
	if s.Current != nil {
		if err := s.Current.Validate(); err != nil {
			add("current: %v", err)
		}
	}
	for i, d := range s.History {
		if err := d.Validate(); err != nil {
			add("history[%d]: %v", i, err)
		}
	}
	for i, r := range s.Rollbacks {
		if r.At.IsZero() {
			add("rollbacks[%d]: at is missing", i)
		}
		if err := r.To.Validate(); err != nil {
			add("rollbacks[%d].to: %v", i, err)
		}
	}
	if s.Halt != nil && (s.Halt.At.IsZero() || s.Halt.Reason == "") {
		add("halt needs at and reason")
	}
	for i, r := range s.Rollouts {
		if err := r.Validate(); err != nil {
			add("rollouts[%d]: %v", i, err)
		}
	}
	if s.UpdatedAt.IsZero() {
		add("updated_at is missing")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidState, strings.Join(problems, "; "))
	}
	return nil
}

// Validate checks one deployment record.
func (d Deployment) Validate() error {
	var problems []string
	if !pipeline.IsGitSHA(d.GitSHA) {
		problems = append(problems, fmt.Sprintf("git_sha %q is not a full commit SHA", d.GitSHA))
	}
	if d.Image == "" || strings.ContainsAny(d.Image, " \t\n") {
		problems = append(problems, fmt.Sprintf("image %q is not an image reference", d.Image))
	}
	if d.ModelName == "" || d.ModelVersion == "" {
		problems = append(problems, "model_name and model_version are required")
	}
	if d.DeployedAt.IsZero() {
		problems = append(problems, "deployed_at is missing")
	}
	if d.Smoke != nil && (len(d.Smoke.Input) == 0 || d.Smoke.Label < 0 || !finite(d.Smoke.Input)) {
		problems = append(problems, "smoke needs a non-empty input of finite values and a label >= 0")
	}
	if g := d.Gate; g != nil && (!sha256Re.MatchString(g.ReportSHA256) || g.At.IsZero()) {
		problems = append(problems, "gate needs report_sha256 (64 hex digits) and at")
	}
	if p := d.PromotedFrom; p != nil && (ValidateEnvironment(p.Environment) != nil || p.DeployedAt.IsZero()) {
		problems = append(problems, "promoted_from needs a valid environment and deployed_at")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, ", "))
	}
	return nil
}

// RecordDeploy makes d the current deployment and moves the old one into history.
func (s *State) RecordDeploy(d Deployment) error {
	if s.Halt != nil {
		return s.haltedErr()
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: deployment: %v", ErrInvalidInput, err)
	}
	if s.Current != nil {
		s.History = append([]Deployment{*s.Current}, s.History...)
		if len(s.History) > MaxHistory {
			s.History = s.History[:MaxHistory]
		}
	}
	s.Current = &d
	return nil
}

// RollbacksSince counts the rollbacks at or after t that did not fail (admitted, under way
// or done).
func (s *State) RollbacksSince(t time.Time) int { return s.countRollbacks(t, false) }

// FailedRollbacksSince counts the rollback attempts at or after t whose redeploy failed.
func (s *State) FailedRollbacksSince(t time.Time) int { return s.countRollbacks(t, true) }

func (s *State) countRollbacks(since time.Time, failed bool) int {
	n := 0
	for _, r := range s.Rollbacks {
		if !r.At.Before(since) && (r.Failed != "") == failed {
			n++
		}
	}
	return n
}

// RollbackFailed marks the rollback admitted at `at` as failed with why. A missing entry (pruned
// past MaxRollbacks) is not an error: there is nothing left to correct.
func (s *State) RollbackFailed(at time.Time, why string) error {
	if strings.TrimSpace(why) == "" {
		return fmt.Errorf("%w: a failed rollback needs its error", ErrInvalidInput)
	}
	for i := len(s.Rollbacks) - 1; i >= 0; i-- {
		if s.Rollbacks[i].At.Equal(at) {
			s.Rollbacks[i].Failed = why
			return nil
		}
	}
	return nil
}

// Previous is the deployment to go back to: the newest in history that differs from the
// current image and was not itself rolled back. ok is false when there is nothing to go back to.
func (s *State) Previous() (Deployment, bool) {
	for _, d := range s.History {
		if !d.RolledBack && (s.Current == nil || d.Image != s.Current.Image) {
			return d, true
		}
	}
	return Deployment{}, false
}

// RolledBackTo makes an earlier deployment current again after a rollback put it back: the
// replaced one goes into history marked as rolled back, so it is never chosen again.
func (s *State) RolledBackTo(d Deployment) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: rollback target: %v", ErrInvalidInput, err)
	}
	if s.Current != nil && s.Current.Image == d.Image {
		return nil
	}
	if s.Current != nil {
		bad := *s.Current
		bad.RolledBack = true
		s.History = append([]Deployment{bad}, s.History...)
	}
	for i, h := range s.History {
		if h.Image == d.Image && !h.RolledBack {
			s.History = append(s.History[:i:i], s.History[i+1:]...)
			break
		}
	}
	if len(s.History) > MaxHistory {
		s.History = s.History[:MaxHistory]
	}
	s.Current = &d
	return nil
}

// AdmitRollback applies the rollback budget at time now. Within budget, it records rb and
// returns nil. Over budget, it halts the environment (recording why) and returns ErrHalted;
// the caller must still save the state so the halt sticks. Already halted: ErrHalted, no change.
func (s *State) AdmitRollback(rb Rollback, now time.Time) error {
	if s.Halt != nil {
		return s.haltedErr()
	}
	if err := rb.To.Validate(); err != nil {
		return fmt.Errorf("%w: rollback target: %v", ErrInvalidInput, err)
	}
	if rb.Reason == "" {
		return fmt.Errorf("%w: a rollback needs a reason", ErrInvalidInput)
	}
	recent := s.RollbacksSince(s.budgetStart(now))
	if recent >= RollbackBudget {
		s.Halt = &Halt{At: now, Reason: fmt.Sprintf("rollback %d within %s refused (budget %d): %s", recent+1, RollbackWindow, RollbackBudget, rb.Reason)}
		return s.haltedErr()
	}
	if rb.At.IsZero() {
		rb.At = now
	}
	s.Rollbacks = append(s.Rollbacks, rb)
	if len(s.Rollbacks) > MaxRollbacks {
		s.Rollbacks = s.Rollbacks[len(s.Rollbacks)-MaxRollbacks:]
	}
	return nil
}

// budgetStart is where the rollback window begins: an hour ago, or the last resume if later,
// since a person who resumed has dealt with the rollbacks before it.
func (s *State) budgetStart(now time.Time) time.Time {
	start := now.Add(-RollbackWindow)
	if n := len(s.Resumes); n > 0 && s.Resumes[n-1].At.After(start) {
		start = s.Resumes[n-1].At
	}
	return start
}

// Resume lifts a halt; it is logged with who and why.
func (s *State) Resume(by, reason string, now time.Time) error {
	if s.Halt == nil {
		return fmt.Errorf("%w: environment %s is not halted; nothing to resume", ErrInvalidInput, s.Environment)
	}
	if strings.TrimSpace(by) == "" || strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: resuming needs who (--by) and why (--reason)", ErrInvalidInput)
	}
	s.Resumes = append(s.Resumes, Resume{At: now, By: by, Reason: reason, Halt: *s.Halt})
	if len(s.Resumes) > MaxResumes {
		s.Resumes = s.Resumes[len(s.Resumes)-MaxResumes:]
	}
	s.Halt = nil
	return nil
}

// CheckNotHalted refuses work on a halted environment, saying who must do what.
func (s *State) CheckNotHalted() error {
	if s.Halt == nil {
		return nil
	}
	return s.haltedErr()
}

func (s *State) haltedErr() error {
	return fmt.Errorf("%w: %s is halted since %s: %s; a person must run `modelship state resume --env %s --by NAME --reason WHY`",
		ErrHalted, s.Environment, s.Halt.At.Format(time.RFC3339), s.Halt.Reason, s.Environment)
}

// Decode parses and validates a state file's bytes for env.
func Decode(raw []byte, env string) (*State, error) {
	var st State
	if err := strictjson.Decode(raw, &st); err != nil {
		return nil, fmt.Errorf("%w: not valid deploy_state.json: %v", ErrInvalidState, err)
	}
	if err := st.Validate(env); err != nil {
		return nil, err
	}
	if st.History == nil {
		st.History = []Deployment{}
	}
	if st.Rollbacks == nil {
		st.Rollbacks = []Rollback{}
	}
	if st.Resumes == nil {
		st.Resumes = []Resume{}
	}
	return &st, nil
}

func finite(xs []float32) bool {
	for _, x := range xs {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}
