// Package deploy rolls a model server image out to a target, verifies it (readiness and a smoke
// inference) before it takes traffic, and records what is live in deploy_state.json. Rollback is
// a deploy of an earlier release, within the rollback budget.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/pipeline"
	"github.com/modelship/modelship/serving/oip"
)

// Labels modelship puts on the containers and pods it runs.
const (
	LabelEnvironment  = "dev.modelship.environment"
	LabelRole         = "dev.modelship.role"
	LabelImage        = "dev.modelship.image"
	LabelModelName    = "dev.modelship.model.name"
	LabelModelVersion = "dev.modelship.model.version"
	LabelGitSHA       = "dev.modelship.git-sha"
)

// LabelValue is v as a label value may hold it (Kubernetes: at most 63 characters of
// [A-Za-z0-9_.-]), every other character replaced by '_': the form a version takes in the pod
// labels, and so the form anything that selects pods by version must use.
func LabelValue(v string) string {
	out := []byte(v)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			out[i] = '_'
		}
	}
	if len(out) > 63 {
		out = out[:63]
	}
	return string(out)
}

// Target is somewhere a model server runs. Deploy returns only once rel is serving and verified;
// on any failure the release that served before keeps (or gets back) the traffic.
type Target interface {
	Name() string
	Deploy(ctx context.Context, rel Release) (*Result, error)
}

// Release is one version to run.
type Release struct {
	Image        string // image reference, tag and/or digest
	ModelName    string
	ModelVersion string
	GitSHA       string
	// Smoke is the smoke inference given for the release; empty, the target takes the image's
	// own (LabelSmoke), else DefaultSmoke (WithImageSmoke).
	Smoke        Smoke
	DefaultSmoke Smoke
	NoSmoke      bool // verified without a smoke inference, on purpose (recorded in the state)
}

// Smoke is one inference the new server must get right before it takes traffic.
type Smoke struct {
	Input []float32
	Want  int // expected class
}

// SmokeFromFixture takes the first sample of a validation fixture.
func SmokeFromFixture(path string) (Smoke, error) {
	fx, err := dataset.ReadFixture(path)
	if err != nil {
		return Smoke{}, fmt.Errorf("smoke test input: %w", err)
	}
	s := pipeline.SampleSmoke(fx.Samples[0].Features, fx.Samples[0].Label)
	return Smoke{Input: s.Input, Want: s.Label}, nil
}

// Result says what was deployed and how long each step took.
type Result struct {
	Image       string // what was asked for
	ImageDigest string // repo@sha256:... when the image came from a registry, else the image ID
	Instance    string // container ID, deployment name, ...
	URL         string // where the verified server answers
	// ModelName and ModelVersion are what the verified server serves, when the target read them
	// off the image (empty: the release's).
	ModelName, ModelVersion string
	Reused                  bool  // nothing was fetched: the live instance, the image on the host or the idle colour served again
	Smoke                   Smoke // the smoke inference the release passed (empty: none)
	Steps                   Steps
}

// Steps are timed stages of a deploy.
type Steps []Step

// Step is one timed stage and how it ended (StepOK, StepFailed, StepUndone).
type Step struct {
	Name     string
	Duration time.Duration
	Status   string
}

// Total is the sum of the steps.
func (s Steps) Total() time.Duration {
	var t time.Duration
	for _, st := range s {
		t += st.Duration
	}
	return t
}

func (s Steps) String() string {
	parts := make([]string, 0, len(s)+1)
	for _, st := range s {
		part := fmt.Sprintf("%s %s", st.Name, st.Duration.Round(time.Millisecond))
		if st.Status == StepFailed {
			part += " (failed)"
		}
		parts = append(parts, part)
	}
	parts = append(parts, fmt.Sprintf("total %s", s.Total().Round(time.Millisecond)))
	return strings.Join(parts, ", ")
}

// ErrModelMismatch marks a release whose model name or version disagrees with what its image
// says it carries: recording it would put a version in deploy_state.json that is not serving.
var ErrModelMismatch = errors.New("release does not match its image")

// AgreeWithImage checks rel against the model name and version an image's labels carry (build-image
// sets dev.modelship.model.name and .version) and fills in what rel leaves empty. An image without
// labels (built elsewhere) passes unchanged; the server's metadata is checked after it starts.
func AgreeWithImage(rel Release, labels map[string]string) (Release, error) {
	for _, f := range []struct {
		flag, label string
		value       *string
	}{{"--model-name", LabelModelName, &rel.ModelName}, {"--model-version", LabelModelVersion, &rel.ModelVersion}} {
		baked := labels[f.label]
		switch {
		case baked == "":
		case *f.value == "":
			*f.value = baked
		case *f.value != baked:
			return rel, fmt.Errorf("%w: %s says %s %q, the release says %q; drop %s to take the image's, or deploy the image built for %q",
				ErrModelMismatch, rel.Image, f.label, baked, *f.value, f.flag, *f.value)
		}
	}
	return rel, nil
}

// ErrVerification marks a release that started but failed its readiness or smoke check.
var ErrVerification = errors.New("verification failed")

// WaitReady polls the server's readiness, and alive() (when set) to fail fast once the instance
// has died. Every target that runs the server itself verifies a release this way, then SmokeTest.
func WaitReady(ctx context.Context, client *oip.Client, alive func(context.Context) error) error {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	var last error
	for i := 0; ; i++ {
		err := probeReady(ctx, client)
		if err == nil {
			return nil
		}
		// A probe cut short by the deadline says less than the one before it.
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if i%5 == 0 && alive != nil {
			if err := alive(ctx); err != nil {
				if ctx.Err() != nil {
					return notReady(last)
				}
				return fmt.Errorf("%w: %w", ErrVerification, err)
			}
		}
		select {
		case <-ctx.Done():
			return notReady(last)
		case <-ticker.C:
		}
	}
}

func notReady(last error) error {
	return fmt.Errorf("%w: not ready before the deadline: %v", ErrVerification, last)
}

// ProbeTimeout bounds one readiness probe, as a Kubernetes probe's timeoutSeconds does: a
// connection that hangs (a black-holed address, a proxy whose backend never answers) is
// retried instead of using up the whole ready budget in one attempt.
const ProbeTimeout = 2 * time.Second

func probeReady(ctx context.Context, client *oip.Client) error {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	return client.Ready(ctx)
}

// SmokeTest checks that the server client reaches serves rel's model at rel's version (its
// metadata), then runs rel's smoke inference: the prediction must be the sample's label. A
// release without a smoke input gets the metadata check only.
func SmokeTest(ctx context.Context, client *oip.Client, rel Release) error {
	meta, err := client.Metadata(ctx, rel.ModelName)
	if err != nil {
		return fmt.Errorf("%w: smoke test: %w", ErrVerification, err)
	}
	if rel.ModelVersion != "" && !slices.Contains(meta.Versions, rel.ModelVersion) {
		return fmt.Errorf("%w: %w: the server serves %s at versions %q, the release says %q", ErrVerification, ErrModelMismatch,
			rel.ModelName, meta.Versions, rel.ModelVersion)
	}
	if len(rel.Smoke.Input) == 0 {
		return nil
	}
	if len(meta.Inputs) != 1 {
		return fmt.Errorf("%w: smoke test: model %s has %d inputs", ErrVerification, rel.ModelName, len(meta.Inputs))
	}
	resp, err := client.Infer(ctx, rel.ModelName, meta.Inputs[0].Name, [][]float32{rel.Smoke.Input})
	if err != nil {
		return fmt.Errorf("%w: smoke inference: %w", ErrVerification, err)
	}
	if len(resp.Outputs) == 0 || len(resp.Outputs[0].Data) == 0 {
		return fmt.Errorf("%w: smoke inference returned no output", ErrVerification)
	}
	if i := inference.NonFinite(resp.Outputs[0].Data); i >= 0 {
		return fmt.Errorf("%w: smoke inference answered %v", ErrVerification, resp.Outputs[0].Data[i])
	}
	// A regression model answers one value, so its argmax is class 0, the label a regression
	// sample's smoke inference carries: what it checks is a finite answer of the right shape.
	got := inference.ArgmaxRow(resp.Outputs[0].Data)
	if got != rel.Smoke.Want {
		return fmt.Errorf("%w: smoke inference predicted class %d for a sample labelled %d", ErrVerification, got, rel.Smoke.Want)
	}
	return nil
}
