package gate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/project"
	"github.com/modelship/modelship/serving/oip"
)

// EvalOptions tune an evaluation.
type EvalOptions struct {
	Model  string          // served model name
	Inputs []project.Input // what the server must declare (modelship.json); empty takes what it declares
	Warmup int             // requests sent and not measured first (default 20)
}

// Evaluation is what the model did on the fixtures: one prediction per sample, in fixture
// order, a class (classification) or a value (regression).
type Evaluation struct {
	Task      string
	Samples   int
	Correct   int
	Confusion [][]int         // [true][predicted]; classification only
	Classes   []int           // predicted class per sample; classification only
	Values    []float64       // predicted value per sample; regression only
	Targets   []float64       // the fixture's value per sample; regression only
	Latencies []time.Duration // one per sample
}

// Evaluate sends every fixture sample, one request each and one at a time, to the server at
// client, and measures each request's latency at the client after a warm-up. The same model
// and fixtures give the same predictions every run. Any server that speaks the Open Inference
// Protocol v2 can be evaluated: the contract is its model metadata and its infer endpoint.
func Evaluate(ctx context.Context, client *oip.Client, fx *dataset.Fixture, opts EvalOptions) (*Evaluation, error) {
	if opts.Warmup <= 0 {
		opts.Warmup = 20
	}
	input, err := servedInput(ctx, client, fx, opts)
	if err != nil {
		return nil, err
	}
	rows := make([][]float32, len(fx.Samples))
	for i, s := range fx.Samples {
		rows[i] = make([]float32, len(s.Features))
		for j, v := range s.Features {
			rows[i][j] = float32(v)
		}
	}
	for i := 0; i < opts.Warmup; i++ {
		if _, err := client.Infer(ctx, opts.Model, input, rows[i%len(rows):i%len(rows)+1]); err != nil {
			return nil, fmt.Errorf("warm-up request: %w", err)
		}
	}
	ev := newEvaluation(fx)
	for i, row := range rows {
		start := time.Now()
		resp, err := client.Infer(ctx, opts.Model, input, [][]float32{row})
		ev.Latencies[i] = time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", fx.SampleID(i), err)
		}
		if err := ev.record(i, resp, fx); err != nil {
			return nil, fmt.Errorf("sample %s: %w", fx.SampleID(i), err)
		}
	}
	return ev, nil
}

// servedInput checks the server's declared inputs against the fixture and the project's
// declaration, and returns the input's name.
func servedInput(ctx context.Context, client *oip.Client, fx *dataset.Fixture, opts EvalOptions) (string, error) {
	meta, err := client.Metadata(ctx, opts.Model)
	if err != nil {
		return "", fmt.Errorf("model metadata: %w", err)
	}
	if len(meta.Inputs) != 1 || len(meta.Inputs[0].Shape) != 2 || meta.Inputs[0].Shape[1] != int64(fx.Features) {
		return "", fmt.Errorf("the served model %q takes inputs %+v; the fixtures have %d features per sample", opts.Model, meta.Inputs, fx.Features)
	}
	got := meta.Inputs[0]
	for _, want := range opts.Inputs {
		if got.Name != want.Name || got.Datatype != want.Datatype || got.Shape[1] != want.Shape[1] {
			return "", fmt.Errorf("the served model %q declares input %s %s %v; modelship.json declares %s %s %v: fix the model's export or the inputs in modelship.json",
				opts.Model, got.Name, got.Datatype, got.Shape, want.Name, want.Datatype, want.Shape)
		}
	}
	return got.Name, nil
}

func newEvaluation(fx *dataset.Fixture) *Evaluation {
	n := len(fx.Samples)
	ev := &Evaluation{Task: fx.TaskOf(), Samples: n, Latencies: make([]time.Duration, n)}
	if ev.Task == dataset.TaskRegression {
		ev.Values, ev.Targets = make([]float64, n), make([]float64, n)
		for i, s := range fx.Samples {
			ev.Targets[i] = s.Target
		}
		return ev
	}
	ev.Classes = make([]int, n)
	ev.Confusion = make([][]int, fx.Classes)
	for c := range ev.Confusion {
		ev.Confusion[c] = make([]int, fx.Classes)
	}
	return ev
}

// record reads sample i's prediction from resp: the argmax of the first output for a class,
// its one value for regression.
func (ev *Evaluation) record(i int, resp *oip.InferResponse, fx *dataset.Fixture) error {
	if len(resp.Outputs) == 0 {
		return errors.New("the response has no outputs")
	}
	out := resp.Outputs[0]
	if j := inference.NonFinite(out.Data); j >= 0 {
		return fmt.Errorf("output %q holds %v", out.Name, out.Data[j])
	}
	if ev.Task == dataset.TaskRegression {
		if len(out.Data) != 1 {
			return fmt.Errorf("output %q has %d values; a regression model answers one value per sample", out.Name, len(out.Data))
		}
		ev.Values[i] = float64(out.Data[0])
		return nil
	}
	if len(out.Data) != fx.Classes {
		return fmt.Errorf("output %q has %d values; the fixtures have %d classes", out.Name, len(out.Data), fx.Classes)
	}
	pred, label := inference.ArgmaxRow(out.Data), fx.Samples[i].Label
	ev.Classes[i] = pred
	ev.Confusion[label][pred]++
	if pred == label {
		ev.Correct++
	}
	return nil
}

// Metrics are the numbers a report and the checks use: the classification ones or the
// regression ones, and the latencies.
type Metrics struct {
	Task           string    `json:"task,omitempty"`
	Samples        int       `json:"samples"`
	Accuracy       float64   `json:"accuracy,omitempty"`
	PerClassRecall []float64 `json:"per_class_recall,omitempty"`
	MinClassRecall float64   `json:"min_class_recall,omitempty"`
	PerClassF1     []float64 `json:"per_class_f1,omitempty"`
	MacroF1        float64   `json:"macro_f1,omitempty"`
	MAE            float64   `json:"mae,omitempty"`
	RMSE           float64   `json:"rmse,omitempty"`
	R2             float64   `json:"r2,omitempty"`
	P50LatencyMS   float64   `json:"p50_latency_ms"`
	P95LatencyMS   float64   `json:"p95_latency_ms"`
	P99LatencyMS   float64   `json:"p99_latency_ms"`
	MeanLatencyMS  float64   `json:"mean_latency_ms"`
	MaxLatencyMS   float64   `json:"max_latency_ms"`
}

// Metrics summarises the evaluation.
func (ev *Evaluation) Metrics() Metrics {
	m := Metrics{Task: ev.Task, Samples: ev.Samples}
	if ev.Task == dataset.TaskRegression {
		m.MAE, m.RMSE, m.R2 = regressionMetrics(ev.Values, ev.Targets)
	} else {
		ev.classificationMetrics(&m)
	}
	sorted := slices.Clone(ev.Latencies)
	slices.Sort(sorted)
	m.P50LatencyMS = ms(Percentile(sorted, 50))
	m.P95LatencyMS = ms(Percentile(sorted, 95))
	m.P99LatencyMS = ms(Percentile(sorted, 99))
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	if len(sorted) > 0 {
		m.MeanLatencyMS = ms(sum / time.Duration(len(sorted)))
		m.MaxLatencyMS = ms(sorted[len(sorted)-1])
	}
	return m
}

// classificationMetrics: accuracy, recall and F1 per class, and their macro (unweighted) mean.
// A class the fixtures lack and the model never predicts has no F1 and is left out of the mean.
func (ev *Evaluation) classificationMetrics(m *Metrics) {
	m.MinClassRecall = 1
	if ev.Samples > 0 {
		m.Accuracy = float64(ev.Correct) / float64(ev.Samples)
	}
	f1s := 0
	for c, row := range ev.Confusion {
		actual, predicted := 0, 0
		for k, n := range row {
			actual += n
			predicted += ev.Confusion[k][c]
		}
		recall := ratio(row[c], actual)
		m.PerClassRecall = append(m.PerClassRecall, recall)
		m.MinClassRecall = math.Min(m.MinClassRecall, recall)
		f1 := 0.0
		if actual+predicted > 0 {
			f1 = 2 * float64(row[c]) / float64(actual+predicted)
			m.MacroF1 += f1
			f1s++
		}
		m.PerClassF1 = append(m.PerClassF1, f1)
	}
	if f1s > 0 {
		m.MacroF1 /= float64(f1s)
	}
}

// regressionMetrics: mean absolute error, root mean squared error, and R² (1 - SSres/SStot;
// 0 for a model no better than the targets' mean, negative when worse).
func regressionMetrics(pred, target []float64) (mae, rmse, r2 float64) {
	if len(target) == 0 {
		return 0, 0, 0
	}
	mean := 0.0
	for _, t := range target {
		mean += t
	}
	mean /= float64(len(target))
	var abs, res, tot float64
	for i, t := range target {
		d := pred[i] - t
		abs += math.Abs(d)
		res += d * d
		tot += (t - mean) * (t - mean)
	}
	n := float64(len(target))
	mae, rmse = abs/n, math.Sqrt(res/n)
	if tot > 0 {
		r2 = 1 - res/tot
	}
	return mae, rmse, r2
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Percentile is the nearest-rank percentile p (0-100] of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
