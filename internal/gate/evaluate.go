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
	"github.com/modelship/modelship/serving/oip"
)

// EvalOptions tune an evaluation.
type EvalOptions struct {
	Model   string // served model name
	Warmup  int    // requests sent and not measured first (default 20)
	Timeout time.Duration
}

// Evaluation is what the model did on the fixtures.
type Evaluation struct {
	Samples   int
	Correct   int
	Confusion [][]int         // [true][predicted]
	Latencies []time.Duration // one per sample, in fixture order
}

// Evaluate sends every fixture sample, one request each and one at a time, to the server at
// client, and measures each request's latency at the client after a warm-up. The same model
// and fixtures give the same predictions every run.
func Evaluate(ctx context.Context, client *oip.Client, fx *dataset.Fixture, opts EvalOptions) (*Evaluation, error) {
	if opts.Warmup <= 0 {
		opts.Warmup = 20
	}
	meta, err := client.Metadata(ctx, opts.Model)
	if err != nil {
		return nil, fmt.Errorf("model metadata: %w", err)
	}
	if len(meta.Inputs) != 1 || len(meta.Inputs[0].Shape) != 2 || meta.Inputs[0].Shape[1] != int64(fx.Features) {
		return nil, fmt.Errorf("the served model %q takes inputs %+v; the fixtures have %d features per sample", opts.Model, meta.Inputs, fx.Features)
	}
	input := meta.Inputs[0].Name
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
	ev := &Evaluation{Samples: len(rows), Confusion: make([][]int, fx.Classes), Latencies: make([]time.Duration, len(rows))}
	for c := range ev.Confusion {
		ev.Confusion[c] = make([]int, fx.Classes)
	}
	for i, row := range rows {
		start := time.Now()
		resp, err := client.Infer(ctx, opts.Model, input, [][]float32{row})
		ev.Latencies[i] = time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
		pred, err := predictedClass(resp, fx.Classes)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
		label := fx.Samples[i].Label
		ev.Confusion[label][pred]++
		if pred == label {
			ev.Correct++
		}
	}
	return ev, nil
}

func predictedClass(resp *oip.InferResponse, classes int) (int, error) {
	if len(resp.Outputs) == 0 {
		return 0, errors.New("the response has no outputs")
	}
	out := resp.Outputs[0]
	if len(out.Data) != classes {
		return 0, fmt.Errorf("output %q has %d values; the fixtures have %d classes", out.Name, len(out.Data), classes)
	}
	if i := inference.NonFinite(out.Data); i >= 0 {
		return 0, fmt.Errorf("output %q holds %v", out.Name, out.Data[i])
	}
	return inference.ArgmaxRow(out.Data), nil
}

// Metrics are the numbers a report and the checks use.
type Metrics struct {
	Samples        int       `json:"samples"`
	Accuracy       float64   `json:"accuracy"`
	PerClassRecall []float64 `json:"per_class_recall"`
	MinClassRecall float64   `json:"min_class_recall"`
	P50LatencyMS   float64   `json:"p50_latency_ms"`
	P95LatencyMS   float64   `json:"p95_latency_ms"`
	P99LatencyMS   float64   `json:"p99_latency_ms"`
	MeanLatencyMS  float64   `json:"mean_latency_ms"`
	MaxLatencyMS   float64   `json:"max_latency_ms"`
}

// Metrics summarises the evaluation.
func (ev *Evaluation) Metrics() Metrics {
	m := Metrics{Samples: ev.Samples, MinClassRecall: 1}
	if ev.Samples > 0 {
		m.Accuracy = float64(ev.Correct) / float64(ev.Samples)
	}
	for c, row := range ev.Confusion {
		total := 0
		for _, n := range row {
			total += n
		}
		recall := 0.0
		if total > 0 {
			recall = float64(row[c]) / float64(total)
		}
		m.PerClassRecall = append(m.PerClassRecall, recall)
		m.MinClassRecall = math.Min(m.MinClassRecall, recall)
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
