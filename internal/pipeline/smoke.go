package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// LabelSmoke is the image label that carries the model's smoke inference, so every deploy and
// rollback of the image runs one that fits its model wherever it runs from. build-image sets it
// from the first sample of the project's fixture.
const LabelSmoke = "dev.modelship.smoke"

// MaxSmokeLabel bounds the label: an engine keeps labels in the image config, read on every
// inspect. A model whose input is larger takes its smoke inference from --smoke-fixture.
const MaxSmokeLabel = 64 << 10

// SmokeSample is one input and the class the model must predict for it: the label's value, as
// JSON {"input":[...],"label":N}.
type SmokeSample struct {
	Input []float32 `json:"input"`
	Label int       `json:"label"`
}

// SampleSmoke is the smoke inference of a fixture's sample (features as the fixture holds them).
func SampleSmoke(features []float64, label int) SmokeSample {
	input := make([]float32, len(features))
	for i, v := range features {
		input[i] = float32(v)
	}
	return SmokeSample{Input: input, Label: label}
}

// Validate refuses a sample no smoke test can run: no input, a non-finite value, a negative class.
func (s SmokeSample) Validate() error {
	if len(s.Input) == 0 {
		return errors.New("smoke inference has no input")
	}
	if s.Label < 0 {
		return fmt.Errorf("smoke inference label %d is negative", s.Label)
	}
	for i, v := range s.Input {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("smoke inference input %d is not finite", i)
		}
	}
	return nil
}

// EncodeSmokeLabel is the LabelSmoke value of s.
func EncodeSmokeLabel(s SmokeSample) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("smoke label: %w", err)
	}
	if len(raw) > MaxSmokeLabel {
		return "", fmt.Errorf("smoke label: %d bytes, over the %d a label may carry; deploys take this model's smoke inference from --smoke-fixture", len(raw), MaxSmokeLabel)
	}
	return string(raw), nil
}

// DecodeSmokeLabel reads a LabelSmoke value, strictly.
func DecodeSmokeLabel(value string) (SmokeSample, error) {
	var s SmokeSample
	if err := strictjson.Decode([]byte(value), &s); err != nil {
		return SmokeSample{}, fmt.Errorf("label %s: %w", LabelSmoke, err)
	}
	if err := s.Validate(); err != nil {
		return SmokeSample{}, fmt.Errorf("label %s: %w", LabelSmoke, err)
	}
	return s, nil
}
