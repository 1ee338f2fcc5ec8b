package analysis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Thresholds are what a candidate must meet. In JSON the durations are strings such as
// "200ms"; fields left out keep the values the Thresholds had, so decode into
// DefaultThresholds() to override only some.
type Thresholds struct {
	// MinRequests are the candidate inference requests (shadow: compared rows) needed before
	// judging; with fewer the verdict is inconclusive.
	MinRequests int `json:"min_requests"`
	// MaxErrorRate is the largest share of 5xx answers (shadow: failed mirrored requests).
	MaxErrorRate float64 `json:"max_error_rate"`
	// MaxP99 is the candidate's largest p99 inference latency.
	MaxP99 time.Duration `json:"max_p99"`
	// MaxP99Ratio is how many times stable's p99 the candidate's may be; 0 turns the check off.
	MaxP99Ratio float64 `json:"max_p99_ratio"`
	// P99RatioFloor is the least stable p99 the ratio divides by: at sub-millisecond latencies
	// a ratio is noise, and a good candidate must not fail on it.
	P99RatioFloor time.Duration `json:"p99_ratio_floor"`
	// MaxDrift is the largest Jensen-Shannon divergence (base 2) of the candidate's class
	// distribution from the reference's.
	MaxDrift float64 `json:"max_drift"`
	// MaxMeanShift is the largest |mean_candidate - mean_reference| / std_reference of a
	// regression model's predictions.
	MaxMeanShift float64 `json:"max_mean_shift"`
	// MaxVarianceRatio is the largest max(var_c/var_r, var_r/var_c) of a regression model's
	// predictions.
	MaxVarianceRatio float64 `json:"max_variance_ratio"`
	// MinAgreement is the least share of mirrored rows both models predicted the same (shadow).
	MinAgreement float64 `json:"min_agreement"`
}

// DefaultThresholds are the thresholds a rollout uses unless told otherwise; MaxP99 is the
// quality gate's latency floor.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MinRequests:      50,
		MaxErrorRate:     0.01,
		MaxP99:           200 * time.Millisecond,
		MaxP99Ratio:      3,
		P99RatioFloor:    5 * time.Millisecond,
		MaxDrift:         0.1,
		MaxMeanShift:     0.5,
		MaxVarianceRatio: 2,
		MinAgreement:     0.95,
	}
}

// Validate names every field out of its range.
func (t Thresholds) Validate() error {
	var errs []error
	bad := func(field string, v any, want string) {
		errs = append(errs, fmt.Errorf("thresholds: %s is %v; want %s", field, v, want))
	}
	if t.MinRequests < 1 {
		bad("min_requests", t.MinRequests, "at least 1")
	}
	if !inRange(t.MaxErrorRate, 0, 1) {
		bad("max_error_rate", t.MaxErrorRate, "a share from 0 to 1")
	}
	if t.MaxP99 <= 0 {
		bad("max_p99", t.MaxP99, "a duration above 0 such as \"200ms\"")
	}
	if t.MaxP99Ratio != 0 && !inRange(t.MaxP99Ratio, 1, math.MaxFloat64) {
		bad("max_p99_ratio", t.MaxP99Ratio, "0 (off) or at least 1")
	}
	if t.P99RatioFloor < 0 {
		bad("p99_ratio_floor", t.P99RatioFloor, "a duration of 0 or more such as \"5ms\"")
	}
	if !inRange(t.MaxDrift, 0, 1) {
		bad("max_drift", t.MaxDrift, "a Jensen-Shannon divergence from 0 to 1")
	}
	if !inRange(t.MaxMeanShift, 0, math.MaxFloat64) {
		bad("max_mean_shift", t.MaxMeanShift, "0 or more standard deviations")
	}
	if !inRange(t.MaxVarianceRatio, 1, math.MaxFloat64) {
		bad("max_variance_ratio", t.MaxVarianceRatio, "at least 1")
	}
	if !inRange(t.MinAgreement, 0, 1) {
		bad("min_agreement", t.MinAgreement, "a share from 0 to 1")
	}
	return errors.Join(errs...)
}

// inRange is lo <= v <= hi, false for NaN.
func inRange(v, lo, hi float64) bool { return v >= lo && v <= hi }

// thresholdsJSON is Thresholds as written in JSON: durations as strings.
type thresholdsJSON struct {
	MinRequests      int          `json:"min_requests"`
	MaxErrorRate     float64      `json:"max_error_rate"`
	MaxP99           jsonDuration `json:"max_p99"`
	MaxP99Ratio      float64      `json:"max_p99_ratio"`
	P99RatioFloor    jsonDuration `json:"p99_ratio_floor"`
	MaxDrift         float64      `json:"max_drift"`
	MaxMeanShift     float64      `json:"max_mean_shift"`
	MaxVarianceRatio float64      `json:"max_variance_ratio"`
	MinAgreement     float64      `json:"min_agreement"`
}

// MarshalJSON writes the durations as strings ("200ms").
func (t Thresholds) MarshalJSON() ([]byte, error) { return json.Marshal(t.toJSON()) }

// UnmarshalJSON reads durations as strings and refuses unknown fields: a misspelt threshold
// silently left at its default would judge a rollout by a limit nobody chose.
func (t *Thresholds) UnmarshalJSON(data []byte) error {
	j := t.toJSON()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("thresholds: %w (the fields are min_requests, max_error_rate, max_p99, max_p99_ratio, "+
			"p99_ratio_floor, max_drift, max_mean_shift, max_variance_ratio, min_agreement)", err)
	}
	*t = j.thresholds()
	return nil
}

func (t Thresholds) toJSON() thresholdsJSON {
	return thresholdsJSON{
		MinRequests: t.MinRequests, MaxErrorRate: t.MaxErrorRate, MaxP99: jsonDuration(t.MaxP99),
		MaxP99Ratio: t.MaxP99Ratio, P99RatioFloor: jsonDuration(t.P99RatioFloor), MaxDrift: t.MaxDrift,
		MaxMeanShift: t.MaxMeanShift, MaxVarianceRatio: t.MaxVarianceRatio, MinAgreement: t.MinAgreement,
	}
}

func (j thresholdsJSON) thresholds() Thresholds {
	return Thresholds{
		MinRequests: j.MinRequests, MaxErrorRate: j.MaxErrorRate, MaxP99: time.Duration(j.MaxP99),
		MaxP99Ratio: j.MaxP99Ratio, P99RatioFloor: time.Duration(j.P99RatioFloor), MaxDrift: j.MaxDrift,
		MaxMeanShift: j.MaxMeanShift, MaxVarianceRatio: j.MaxVarianceRatio, MinAgreement: j.MinAgreement,
	}
}

// jsonDuration is a time.Duration written as a string such as "200ms".
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON refuses bare numbers: 200 could mean nanoseconds or milliseconds.
func (d *jsonDuration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("duration %s is not a string; write it with a unit, such as \"200ms\"", data)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w; write it with a unit, such as \"200ms\"", s, err)
	}
	*d = jsonDuration(v)
	return nil
}
