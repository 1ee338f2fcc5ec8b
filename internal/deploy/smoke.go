package deploy

import (
	"errors"
	"fmt"

	"github.com/modelship/modelship/internal/pipeline"
)

// LabelSmoke is the image label that carries the model's smoke inference (pipeline.LabelSmoke).
const LabelSmoke = pipeline.LabelSmoke

// ErrNoSmokeInput marks a release with no smoke inference from anywhere that was not told to go
// without one.
var ErrNoSmokeInput = errors.New("no smoke inference")

// SmokeLabel is the LabelSmoke value of s.
func SmokeLabel(s Smoke) (string, error) {
	return pipeline.EncodeSmokeLabel(pipeline.SmokeSample{Input: s.Input, Label: s.Want})
}

// WithImageSmoke settles the smoke inference rel runs once its image's labels are known: the one
// given (a flag, or the one recorded with a deployment), else the image's own, else
// rel.DefaultSmoke; with none, the release is refused unless it goes without on purpose.
func (rel Release) WithImageSmoke(labels map[string]string) (Release, error) {
	if rel.NoSmoke || len(rel.Smoke.Input) > 0 {
		return rel, nil
	}
	if v := labels[LabelSmoke]; v != "" {
		s, err := pipeline.DecodeSmokeLabel(v)
		if err != nil {
			return rel, fmt.Errorf("%w: image %s carries an unreadable one: %w; give --smoke-fixture FILE instead", ErrNoSmokeInput, rel.Image, err)
		}
		rel.Smoke = Smoke{Input: s.Input, Want: s.Label}
		return rel, nil
	}
	if len(rel.DefaultSmoke.Input) > 0 {
		rel.Smoke = rel.DefaultSmoke
		return rel, nil
	}
	return rel, fmt.Errorf("%w for %s: the image carries none (label %s, which build-image sets) and none was given; "+
		"give --smoke-fixture FILE (its first sample) or verify without one with --no-smoke (recorded in the state)", ErrNoSmokeInput, rel.Image, LabelSmoke)
}
