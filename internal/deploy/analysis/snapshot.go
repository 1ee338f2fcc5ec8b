// Package analysis judges a candidate model server against the stable one from their Prometheus
// metrics, for canary and shadow rollouts: error rate and latency, as Argo Rollouts analysis
// templates or Flagger checks do, and also whether the candidate predicts what the stable model
// predicts (class distributions, regression moments, shadow agreement).
//
// The flow is Scrape (or Parse) each server twice, Sum the pods of one version, Delta the two
// sums into a Window, and hand the stable and candidate windows to Canary or Shadow.
package analysis

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series a modelship model server exports (serving/metrics.go).
const (
	metricModelInfo      = "modelship_model_info"
	metricRequests       = "modelship_http_requests_total"
	metricDuration       = "modelship_http_request_duration_seconds"
	metricPredictions    = "modelship_predictions_total"
	metricValuesTotal    = "modelship_prediction_values_total"
	metricValueSum       = "modelship_prediction_value_sum"
	metricValueSquares   = "modelship_prediction_value_squares_sum"
	metricShadowRequests = "modelship_shadow_requests_total"
	metricShadowRows     = "modelship_shadow_rows_total"
	metricShadowPreds    = "modelship_shadow_predictions_total"
	metricShadowValSum   = "modelship_shadow_value_sum"
	metricShadowValSq    = "modelship_shadow_value_squares_sum"
	metricShadowValTotal = "modelship_shadow_values_total"
	metricShadowDuration = "modelship_shadow_duration_seconds"

	// inferHandler is the handler label of inference requests; health probes and metadata
	// requests say nothing about the model and must not dilute its error rate.
	inferHandler = "infer"
)

// MaxScrapeBytes bounds a /metrics body Scrape reads. A model server's page is a few tens of
// KiB; far more means the URL points at something else, which must not fill memory.
const MaxScrapeBytes = 8 << 20

// maxClass bounds the class label: a class index is a row of an output tensor, and a label
// beyond this is a broken exporter that would otherwise make us allocate a huge slice.
const maxClass = 1 << 16

// Snapshot is what one server (or, after Sum, one set of servers) had counted at one moment.
// Every number is a cumulative counter except where said; Delta turns two snapshots into what
// happened in between.
type Snapshot struct {
	// Models are the modelship_model_info series seen; one per server version summed.
	Models []ModelInfo `json:"models"`
	// Infer counts inference answers by status class: "2xx", "4xx", "5xx", "other".
	Infer map[string]float64 `json:"infer"`
	// Latency is the inference request latency histogram, in seconds.
	Latency Histogram `json:"latency"`
	// Classes counts rows predicted as each class (index = class).
	Classes []float64 `json:"classes,omitempty"`
	// Values are the moments of a regression model's predictions.
	Values Moments `json:"values"`
	// Shadow is what a live server that mirrors traffic to a candidate counted.
	Shadow ShadowCounters `json:"shadow"`
}

// ShadowCounters are the shadow series of a live server that mirrors its traffic to a candidate.
type ShadowCounters struct {
	// Requests counts mirrored requests by result: "ok", "error", "dropped".
	Requests map[string]float64 `json:"requests"`
	// Rows counts mirrored rows by whether both models predicted the same: "agree", "disagree".
	Rows             map[string]float64 `json:"rows"`
	LiveClasses      []float64          `json:"live_classes,omitempty"`
	CandidateClasses []float64          `json:"candidate_classes,omitempty"`
	Live             Moments            `json:"live"`
	Candidate        Moments            `json:"candidate"`
	// Latency is the mirrored requests' latency histogram, in seconds.
	Latency Histogram `json:"latency"`
}

// ModelInfo is one modelship_model_info series: the model a server runs.
type ModelInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Backend string `json:"backend"`
}

// Moments are the count, sum and sum of squares of a model's predicted values: enough for the
// mean and variance without keeping the values.
type Moments struct {
	Count      float64 `json:"count"`
	Sum        float64 `json:"sum"`
	SumSquares float64 `json:"sum_squares"`
}

// Mean is the mean predicted value, 0 with no values.
func (m Moments) Mean() float64 {
	if m.Count <= 0 {
		return 0
	}
	return m.Sum / m.Count
}

// Variance is the population variance of the predicted values, 0 with no values. Computed from
// the moments it can come out a hair below zero through rounding; that is clamped to 0.
func (m Moments) Variance() float64 {
	if m.Count <= 0 {
		return 0
	}
	mean := m.Mean()
	return max(m.SumSquares/m.Count-mean*mean, 0)
}

func (m Moments) add(o Moments) Moments {
	return Moments{Count: m.Count + o.Count, Sum: m.Sum + o.Sum, SumSquares: m.SumSquares + o.SumSquares}
}

// Histogram is a Prometheus histogram: cumulative bucket counts by finite upper bound, in
// ascending order, with Count as the implicit +Inf bucket.
type Histogram struct {
	Buckets []Bucket `json:"buckets,omitempty"`
	Count   float64  `json:"count"`
	Sum     float64  `json:"sum"`
}

// Bucket is one cumulative histogram bucket: observations at or below UpperBound.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      float64 `json:"count"`
}

// at is the cumulative count at bound: the count of the largest own bound at or below it, so a
// histogram can be read at another histogram's bounds without ever counting too much.
func (h Histogram) at(bound float64) float64 {
	var c float64
	for _, b := range h.Buckets {
		if b.UpperBound > bound {
			break
		}
		c = b.Count
	}
	return c
}

// bounds is the union of the finite upper bounds of hs, ascending.
func bounds(hs ...Histogram) []float64 {
	var all []float64
	for _, h := range hs {
		for _, b := range h.Buckets {
			all = append(all, b.UpperBound)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// addHistograms adds histograms bucket by upper bound. Histograms of one server version share
// their bucket layout, so this is exact; with different layouts each is read at the union of
// bounds through at, which never overstates a bucket.
func addHistograms(hs ...Histogram) Histogram {
	var out Histogram
	for _, le := range bounds(hs...) {
		var c float64
		for _, h := range hs {
			c += h.at(le)
		}
		out.Buckets = append(out.Buckets, Bucket{UpperBound: le, Count: c})
	}
	for _, h := range hs {
		out.Count += h.Count
		out.Sum += h.Sum
	}
	return out
}

// Parse reads one server's /metrics page in the Prometheus text format.
func Parse(r io.Reader) (*Snapshot, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics as the Prometheus text format: %w (check that this is a Prometheus /metrics page)", err)
	}
	return fromFamilies(families)
}

func fromFamilies(families map[string]*dto.MetricFamily) (*Snapshot, error) {
	info := families[metricModelInfo]
	if info == nil || len(info.GetMetric()) == 0 {
		return nil, fmt.Errorf("no %s series: this is not a modelship model server (check that the URL is the model server's /metrics, not another service's)", metricModelInfo)
	}
	s := &Snapshot{}
	for _, m := range info.GetMetric() {
		s.Models = append(s.Models, ModelInfo{Name: label(m, "name"), Version: label(m, "version"), SHA256: label(m, "sha256"), Backend: label(m, "backend")})
	}
	s.Infer, s.Latency = inferSeries(families)
	var err error
	if s.Classes, err = classCounts(families[metricPredictions], nil); err != nil {
		return nil, err
	}
	s.Values = Moments{Count: total(families[metricValuesTotal]), Sum: total(families[metricValueSum]), SumSquares: total(families[metricValueSquares])}
	if s.Shadow, err = shadowSeries(families); err != nil {
		return nil, err
	}
	return s, nil
}

// inferSeries are the inference requests by status class and their latency histogram.
func inferSeries(families map[string]*dto.MetricFamily) (map[string]float64, Histogram) {
	answers := map[string]float64{}
	for _, m := range families[metricRequests].GetMetric() {
		if label(m, "handler") == inferHandler {
			answers[codeClass(label(m, "code"))] += value(m)
		}
	}
	var latency Histogram
	for _, m := range families[metricDuration].GetMetric() {
		if label(m, "handler") == inferHandler {
			latency = addHistograms(latency, histogram(m))
		}
	}
	return answers, latency
}

// shadowSeries are the series of a live server that mirrors to a candidate; empty on others.
func shadowSeries(families map[string]*dto.MetricFamily) (ShadowCounters, error) {
	sc := ShadowCounters{Requests: map[string]float64{}, Rows: map[string]float64{}}
	for _, m := range families[metricShadowRequests].GetMetric() {
		sc.Requests[label(m, "result")] += value(m)
	}
	for _, m := range families[metricShadowRows].GetMetric() {
		sc.Rows[label(m, "result")] += value(m)
	}
	var err error
	preds := families[metricShadowPreds]
	if sc.LiveClasses, err = classCounts(preds, bySource("live")); err != nil {
		return sc, err
	}
	if sc.CandidateClasses, err = classCounts(preds, bySource("candidate")); err != nil {
		return sc, err
	}
	sc.Live = shadowMoments(families, "live")
	sc.Candidate = shadowMoments(families, "candidate")
	for _, m := range families[metricShadowDuration].GetMetric() {
		sc.Latency = addHistograms(sc.Latency, histogram(m))
	}
	return sc, nil
}

// shadowMoments are the moments of one source's values on the mirrored rows.
func shadowMoments(families map[string]*dto.MetricFamily, source string) Moments {
	keep := bySource(source)
	return Moments{
		Count:      totalWhere(families[metricShadowValTotal], keep),
		Sum:        totalWhere(families[metricShadowValSum], keep),
		SumSquares: totalWhere(families[metricShadowValSq], keep),
	}
}

// Scrape GETs a server's metrics page (the URL as given, e.g. "http://host:8000/metrics") and
// parses it. client nil means http.DefaultClient; ctx bounds the whole exchange.
func Scrape(ctx context.Context, client *http.Client, url string) (*Snapshot, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %q: not a usable URL: %w", url, err)
	}
	// The text format is what Parse reads; without this a server could answer protobuf.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w (is the model server running and listening there?)", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxScrapeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: read the body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %s, want 200 OK (check the address and path; a model server serves /metrics): %s",
			url, resp.Status, snippet(body))
	}
	if len(body) > MaxScrapeBytes {
		return nil, fmt.Errorf("scrape %s: the metrics page is over %d MiB, far more than a model server exports (check that the URL is the model server's /metrics)", url, MaxScrapeBytes>>20)
	}
	s, err := Parse(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// snippet is the start of a body, for an error message.
func snippet(body []byte) string {
	const n = 200
	s := strings.TrimSpace(string(body))
	if len(s) > n {
		s = s[:n] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}

// Sum adds the snapshots of several servers of one version (the pods of a deployment) into
// one. Nil snapshots are skipped. A pod that restarted between two scrapes can hide in a sum
// (the others' growth covers its reset); when that matters, Delta each pod and Add the windows.
func Sum(snaps ...*Snapshot) *Snapshot {
	out := &Snapshot{Infer: map[string]float64{}, Shadow: ShadowCounters{Requests: map[string]float64{}, Rows: map[string]float64{}}}
	for _, s := range snaps {
		if s == nil {
			continue
		}
		for _, m := range s.Models {
			if !slices.Contains(out.Models, m) {
				out.Models = append(out.Models, m)
			}
		}
		addMap(out.Infer, s.Infer)
		out.Latency = addHistograms(out.Latency, s.Latency)
		out.Classes = addSlices(out.Classes, s.Classes)
		out.Values = out.Values.add(s.Values)
		addMap(out.Shadow.Requests, s.Shadow.Requests)
		addMap(out.Shadow.Rows, s.Shadow.Rows)
		out.Shadow.LiveClasses = addSlices(out.Shadow.LiveClasses, s.Shadow.LiveClasses)
		out.Shadow.CandidateClasses = addSlices(out.Shadow.CandidateClasses, s.Shadow.CandidateClasses)
		out.Shadow.Live = out.Shadow.Live.add(s.Shadow.Live)
		out.Shadow.Candidate = out.Shadow.Candidate.add(s.Shadow.Candidate)
		out.Shadow.Latency = addHistograms(out.Shadow.Latency, s.Shadow.Latency)
	}
	slices.SortFunc(out.Models, func(a, b ModelInfo) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version), cmp.Compare(a.SHA256, b.SHA256), cmp.Compare(a.Backend, b.Backend))
	})
	return out
}

func addMap(dst, src map[string]float64) {
	for k, v := range src {
		dst[k] += v
	}
}

// addSlices adds two per-class count slices, the shorter padded with zeros.
func addSlices(a, b []float64) []float64 {
	out := make([]float64, max(len(a), len(b)))
	for i := range out {
		if i < len(a) {
			out[i] += a[i]
		}
		if i < len(b) {
			out[i] += b[i]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value reads a sample whatever type its family declares: an exporter may register a counter
// as untyped without changing what it counts.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func bySource(source string) func(*dto.Metric) bool {
	return func(m *dto.Metric) bool { return label(m, "source") == source }
}

func total(mf *dto.MetricFamily) float64 { return totalWhere(mf, nil) }

func totalWhere(mf *dto.MetricFamily, keep func(*dto.Metric) bool) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		if keep == nil || keep(m) {
			sum += value(m)
		}
	}
	return sum
}

// classCounts reads a family labelled class="<i>" into counts by class index.
func classCounts(mf *dto.MetricFamily, keep func(*dto.Metric) bool) ([]float64, error) {
	var counts []float64
	for _, m := range mf.GetMetric() {
		if keep != nil && !keep(m) {
			continue
		}
		raw := label(m, "class")
		i, err := strconv.Atoi(raw)
		if err != nil || i < 0 || i >= maxClass {
			return nil, fmt.Errorf("%s has class=%q; want a class index 0..%d (is the server's exporter out of date?)", mf.GetName(), raw, maxClass-1)
		}
		if i >= len(counts) {
			counts = append(counts, make([]float64, i+1-len(counts))...)
		}
		counts[i] += value(m)
	}
	return counts, nil
}

// histogram converts a parsed histogram, leaving out the +Inf bucket: Count is that bucket.
func histogram(m *dto.Metric) Histogram {
	ph := m.GetHistogram()
	h := Histogram{Count: float64(ph.GetSampleCount()), Sum: ph.GetSampleSum()}
	if ph.SampleCountFloat != nil {
		h.Count = ph.GetSampleCountFloat()
	}
	for _, b := range ph.GetBucket() {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue
		}
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		h.Buckets = append(h.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: c})
	}
	slices.SortFunc(h.Buckets, func(a, b Bucket) int { return cmp.Compare(a.UpperBound, b.UpperBound) })
	return h
}

// codeClass is a status code's class: "2xx", "4xx", "5xx", ... or "other" for what is not one.
func codeClass(code string) string {
	if n, err := strconv.Atoi(code); err == nil && n >= 100 && n <= 599 {
		return strconv.Itoa(n/100) + "xx"
	}
	return "other"
}
