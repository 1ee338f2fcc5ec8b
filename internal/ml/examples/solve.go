package examples

import (
	"fmt"
	"math"
)

// solveSPD solves a·x = b for a symmetric positive-definite n×n matrix a (row-major) by
// Cholesky decomposition a = L·Lᵀ, then forward and back substitution. Ten unknowns do not
// justify a linear-algebra dependency.
func solveSPD(a, b []float64) ([]float64, error) {
	n := len(b)
	if len(a) != n*n {
		return nil, fmt.Errorf("solve: matrix has %d entries, want %d×%d", len(a), n, n)
	}
	l := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			s := a[i*n+j]
			for k := 0; k < j; k++ {
				s -= float64(l[i*n+k] * l[j*n+k])
			}
			if i != j {
				l[i*n+j] = s / l[j*n+j]
				continue
			}
			if s <= 0 || math.IsNaN(s) {
				return nil, fmt.Errorf("solve: matrix is not positive definite (pivot %d is %g)", i, s)
			}
			l[i*n+i] = math.Sqrt(s)
		}
	}
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		s := b[i]
		for k := 0; k < i; k++ {
			s -= float64(l[i*n+k] * y[k])
		}
		y[i] = s / l[i*n+i]
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := y[i]
		for k := i + 1; k < n; k++ {
			s -= float64(l[k*n+i] * x[k])
		}
		x[i] = s / l[i*n+i]
	}
	return x, nil
}
