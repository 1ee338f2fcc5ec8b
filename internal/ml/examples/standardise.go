package examples

import "math"

// standardiser maps each feature to zero mean and unit variance over the training rows. The
// wine and diabetes features range from fractions to thousands; unscaled, the largest would
// swamp both the gradient descent and the normal equations.
type standardiser struct {
	mean, scale []float64 // scale is 1/standard deviation
}

func fitStandardiser(rows [][]float64) standardiser {
	width := len(rows[0])
	s := standardiser{mean: make([]float64, width), scale: make([]float64, width)}
	n := float64(len(rows))
	for _, row := range rows {
		for i, v := range row {
			s.mean[i] += v
		}
	}
	for i := range s.mean {
		s.mean[i] /= n
	}
	variance := make([]float64, width)
	for _, row := range rows {
		for i, v := range row {
			d := v - s.mean[i]
			// float64() keeps the compiler from fusing into FMA: same bits on every architecture.
			variance[i] += float64(d * d)
		}
	}
	for i, v := range variance {
		s.scale[i] = 1
		if sd := math.Sqrt(v / n); sd > 0 {
			s.scale[i] = 1 / sd
		}
	}
	return s
}

func (s standardiser) apply(row []float64) []float64 {
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = float64((v - s.mean[i]) * s.scale[i])
	}
	return out
}

func (s standardiser) applyAll(rows [][]float64) [][]float64 {
	out := make([][]float64, len(rows))
	for i, row := range rows {
		out[i] = s.apply(row)
	}
	return out
}
