package gate

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeLatencyChart draws the per-request latency histogram with p95 marked, and the limit
// marked where it is on the scale (it is usually far to the right of every request).
func writeLatencyChart(path string, r *Report) error {
	p := plot.New()
	name := r.Model.Name
	if r.Model.Version != "" {
		name += "@" + r.Model.Version
	}
	p.Title.Text = fmt.Sprintf("%s: latency of %d requests", name, len(r.LatenciesMS))
	p.X.Label.Text = "latency (ms)"
	p.Y.Label.Text = "requests"
	h, err := plotter.NewHist(plotter.Values(r.LatenciesMS), 40)
	if err != nil {
		return err
	}
	h.FillColor = color.RGBA{R: 90, G: 140, B: 200, A: 255}
	p.Add(h)
	top := 0.0
	for _, bin := range h.Bins {
		top = math.Max(top, bin.Weight)
	}
	mark := func(x float64, c color.Color, name string) error {
		line, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top * 1.05}})
		if err != nil {
			return err
		}
		line.Color, line.Width = c, vg.Points(2)
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
		p.Legend.Add(name, line)
		return nil
	}
	m := r.Metrics
	if err := mark(m.P95LatencyMS, color.RGBA{R: 230, G: 120, B: 0, A: 255}, fmt.Sprintf("p95 %.3f ms", m.P95LatencyMS)); err != nil {
		return err
	}
	limit := 0.0
	if r.Baseline != nil {
		limit = r.Baseline.Floors.P95LatencyMS
	}
	if limit > 0 && limit <= 4*m.MaxLatencyMS {
		if err := mark(limit, color.RGBA{R: 200, A: 255}, fmt.Sprintf("limit %.0f ms", limit)); err != nil {
			return err
		}
	} else if limit > 0 {
		p.Title.Text += fmt.Sprintf("\n(the %.0f ms limit is %.0fx the slowest, off the scale)", limit, limit/math.Max(m.MaxLatencyMS, 1e-9))
	}
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(10)
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}

// confusionGrid adapts the confusion matrix to plotter.GridXYZ; row 0 is drawn at the top.
type confusionGrid [][]int

func (g confusionGrid) Dims() (c, r int)   { return len(g), len(g) }
func (g confusionGrid) Z(c, r int) float64 { return float64(g[len(g)-1-r][c]) }
func (g confusionGrid) X(c int) float64    { return float64(c) }
func (g confusionGrid) Y(r int) float64    { return float64(r) }

// writeConfusionChart draws true class (rows, top to bottom) against predicted class, with the
// count in every non-empty cell.
func writeConfusionChart(path string, confusion [][]int) error {
	n := len(confusion)
	if n == 0 {
		return fmt.Errorf("empty confusion matrix")
	}
	p := plot.New()
	p.Title.Text = "confusion matrix (rows: true class, columns: predicted)"
	p.X.Label.Text = "predicted class"
	p.Y.Label.Text = "true class"
	pal := moreland.SmoothBlueRed().Palette(64)
	p.Add(plotter.NewHeatMap(confusionGrid(confusion), pal))
	var labels plotter.XYLabels
	for t := 0; t < n; t++ {
		for pr := 0; pr < n; pr++ {
			if confusion[t][pr] == 0 {
				continue
			}
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(pr), Y: float64(n - 1 - t)})
			labels.Labels = append(labels.Labels, fmt.Sprint(confusion[t][pr]))
		}
	}
	if len(labels.XYs) > 0 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = -0.5, -0.5
		}
		p.Add(l)
	}
	ticks := make([]plot.Tick, n)
	yticks := make([]plot.Tick, n)
	for i := 0; i < n; i++ {
		ticks[i] = plot.Tick{Value: float64(i), Label: fmt.Sprint(i)}
		yticks[i] = plot.Tick{Value: float64(n - 1 - i), Label: fmt.Sprint(i)}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Tick.Marker = plot.ConstantTicks(yticks)
	return p.Save(6*vg.Inch, 6*vg.Inch, path)
}
