// Package mlp trains the reference model: a one-hidden-layer perceptron with ReLU and softmax,
// in plain float64 Go so that the same data and seed give the same weights on every run.
package mlp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Config holds the training hyper-parameters.
type Config struct {
	Hidden       int     // hidden units
	Epochs       int     // passes over the training set
	BatchSize    int     // samples per gradient step
	LearningRate float64 // SGD step size
	Momentum     float64 // classical momentum
	Seed         uint64  // seeds initialisation and batch order
	InputScale   float64 // inputs are multiplied by this before the first layer (folded into the export)
}

// DefaultConfig is what the reference model is trained with.
func DefaultConfig() Config {
	return Config{Hidden: 32, Epochs: 60, BatchSize: 32, LearningRate: 0.05, Momentum: 0.9, Seed: 42, InputScale: 1.0 / 16}
}

// Network is a trained 2-layer perceptron. W1 is inputs x hidden, W2 hidden x classes
// (row-major), the layout ONNX Gemm takes without a transpose.
type Network struct {
	Inputs, Hidden, Classes int
	InputScale              float64
	W1, B1, W2, B2          []float64
}

// Train fits a network to x (rows of equal width) and labels y in 0..classes-1.
func Train(cfg Config, x [][]float64, y []int, classes int) (*Network, error) {
	if len(x) == 0 || len(x) != len(y) {
		return nil, fmt.Errorf("training set has %d rows and %d labels; need the same non-zero number", len(x), len(y))
	}
	if cfg.Hidden <= 0 || cfg.Epochs <= 0 || cfg.BatchSize <= 0 || cfg.LearningRate <= 0 || cfg.InputScale <= 0 {
		return nil, errors.New("hidden, epochs, batch size, learning rate and input scale must all be positive")
	}
	inputs := len(x[0])
	for i, row := range x {
		if len(row) != inputs {
			return nil, fmt.Errorf("row %d has %d features, row 0 has %d", i, len(row), inputs)
		}
		if y[i] < 0 || y[i] >= classes {
			return nil, fmt.Errorf("row %d has label %d outside 0..%d", i, y[i], classes-1)
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))
	n := &Network{Inputs: inputs, Hidden: cfg.Hidden, Classes: classes, InputScale: cfg.InputScale,
		W1: heInit(rng, inputs, cfg.Hidden), B1: make([]float64, cfg.Hidden),
		W2: heInit(rng, cfg.Hidden, classes), B2: make([]float64, classes)}
	t := newTrainer(n, cfg)
	order := make([]int, len(x))
	for i := range order {
		order[i] = i
	}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for start := 0; start < len(order); start += cfg.BatchSize {
			end := min(start+cfg.BatchSize, len(order))
			t.step(x, y, order[start:end])
		}
	}
	return n, nil
}

func heInit(rng *rand.Rand, fanIn, fanOut int) []float64 {
	w := make([]float64, fanIn*fanOut)
	std := math.Sqrt(2 / float64(fanIn))
	for i := range w {
		w[i] = rng.NormFloat64() * std
	}
	return w
}

// Predict returns the class probabilities for one row.
func (n *Network) Predict(row []float64) []float64 {
	h := make([]float64, n.Hidden)
	out := make([]float64, n.Classes)
	n.forward(row, h, out)
	return out
}

// Accuracy is the share of rows whose most probable class is the label.
func (n *Network) Accuracy(x [][]float64, y []int) float64 {
	correct := 0
	for i, row := range x {
		if Argmax(n.Predict(row)) == y[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(x))
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// forward fills h (post-ReLU hidden) and out (softmax probabilities). Products are wrapped in
// float64() so no platform fuses them into FMA: the same weights on every architecture.
func (n *Network) forward(row, h, out []float64) {
	for j := 0; j < n.Hidden; j++ {
		s := n.B1[j]
		for i := 0; i < n.Inputs; i++ {
			s += float64(row[i] * n.InputScale * n.W1[i*n.Hidden+j])
		}
		h[j] = math.Max(0, s)
	}
	for k := 0; k < n.Classes; k++ {
		s := n.B2[k]
		for j := 0; j < n.Hidden; j++ {
			s += float64(h[j] * n.W2[j*n.Classes+k])
		}
		out[k] = s
	}
	softmax(out)
}

func softmax(v []float64) {
	maxV := v[Argmax(v)]
	sum := 0.0
	for i := range v {
		v[i] = math.Exp(v[i] - maxV)
		sum += v[i]
	}
	for i := range v {
		v[i] /= sum
	}
}

// trainer holds the gradient and momentum buffers reused across steps.
type trainer struct {
	n                     *Network
	cfg                   Config
	gW1, gB1, gW2, gB2    []float64
	vW1, vB1, vW2, vB2    []float64
	h, out, dOut, dHidden []float64
}

func newTrainer(n *Network, cfg Config) *trainer {
	mk := func(size int) []float64 { return make([]float64, size) }
	return &trainer{n: n, cfg: cfg,
		gW1: mk(len(n.W1)), gB1: mk(len(n.B1)), gW2: mk(len(n.W2)), gB2: mk(len(n.B2)),
		vW1: mk(len(n.W1)), vB1: mk(len(n.B1)), vW2: mk(len(n.W2)), vB2: mk(len(n.B2)),
		h: mk(n.Hidden), out: mk(n.Classes), dOut: mk(n.Classes), dHidden: mk(n.Hidden)}
}

// step applies one mini-batch of softmax cross-entropy gradient descent with momentum.
func (t *trainer) step(x [][]float64, y []int, batch []int) {
	n := t.n
	for _, g := range [][]float64{t.gW1, t.gB1, t.gW2, t.gB2} {
		clear(g)
	}
	for _, idx := range batch {
		row := x[idx]
		n.forward(row, t.h, t.out)
		for k := range t.dOut {
			t.dOut[k] = t.out[k]
		}
		t.dOut[y[idx]] -= 1
		for j := 0; j < n.Hidden; j++ {
			d := 0.0
			for k := 0; k < n.Classes; k++ {
				t.gW2[j*n.Classes+k] += float64(t.h[j] * t.dOut[k])
				d += float64(n.W2[j*n.Classes+k] * t.dOut[k])
			}
			if t.h[j] <= 0 {
				d = 0
			}
			t.dHidden[j] = d
		}
		for k := 0; k < n.Classes; k++ {
			t.gB2[k] += t.dOut[k]
		}
		for i := 0; i < n.Inputs; i++ {
			xi := float64(row[i] * n.InputScale)
			for j := 0; j < n.Hidden; j++ {
				t.gW1[i*n.Hidden+j] += float64(xi * t.dHidden[j])
			}
		}
		for j := 0; j < n.Hidden; j++ {
			t.gB1[j] += t.dHidden[j]
		}
	}
	scale := t.cfg.LearningRate / float64(len(batch))
	update(n.W1, t.vW1, t.gW1, scale, t.cfg.Momentum)
	update(n.B1, t.vB1, t.gB1, scale, t.cfg.Momentum)
	update(n.W2, t.vW2, t.gW2, scale, t.cfg.Momentum)
	update(n.B2, t.vB2, t.gB2, scale, t.cfg.Momentum)
}

func update(w, v, g []float64, scale, momentum float64) {
	for i := range w {
		v[i] = float64(momentum*v[i]) - float64(scale*g[i])
		w[i] += v[i]
	}
}
