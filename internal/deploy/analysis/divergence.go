package analysis

import "math"

// PSIEpsilon is added to every proportion PSI compares (then renormalised), so that a class
// one side never predicted gives a large but finite term instead of an infinite one.
const PSIEpsilon = 1e-4

// JensenShannon is the Jensen-Shannon divergence, base 2, of two distributions given as counts
// (normalised here; negative counts count as zero). It is symmetric and lies in [0,1]: 0 for the
// same proportions, 1 for distributions with no class in common. Slices of unequal length are
// padded with zeros. With no counts on either side there is nothing to compare and the answer
// is 0, so a caller that must tell "same" from "nothing" checks the totals first.
func JensenShannon(p, q []float64) float64 {
	pp, qq, ok := proportions(p, q)
	if !ok {
		return 0
	}
	var js float64
	for i := range pp {
		m := (pp[i] + qq[i]) / 2
		js += klTerm(pp[i], m)/2 + klTerm(qq[i], m)/2
	}
	return min(max(js, 0), 1) // rounding can step a hair outside
}

// klTerm is x·log2(x/m), 0 for x = 0 (its limit).
func klTerm(x, m float64) float64 {
	if x <= 0 {
		return 0
	}
	return x * math.Log2(x/m)
}

// PSI is the population stability index of q (the candidate's distribution) against p (the
// reference's), both given as counts: Σ (q_i - p_i)·ln(q_i/p_i) over proportions. Every
// proportion gets PSIEpsilon added and the distribution is renormalised, so a class one side
// never predicted gives a finite term. The usual reading: below 0.1 stable, 0.1 to 0.25 a
// moderate shift, above 0.25 a large one. Unequal lengths are padded with zeros; with no counts
// on either side the answer is 0.
func PSI(p, q []float64) float64 {
	pp, qq, ok := proportions(p, q)
	if !ok {
		return 0
	}
	smooth := func(x []float64) {
		total := 1 + PSIEpsilon*float64(len(x))
		for i := range x {
			x[i] = (x[i] + PSIEpsilon) / total
		}
	}
	smooth(pp)
	smooth(qq)
	var psi float64
	for i := range pp {
		psi += (qq[i] - pp[i]) * math.Log(qq[i]/pp[i])
	}
	return psi
}

// proportions normalises two count vectors to the same length; ok is false when either has no
// positive count.
func proportions(p, q []float64) (pp, qq []float64, ok bool) {
	n := max(len(p), len(q))
	pp, qq = make([]float64, n), make([]float64, n)
	var sp, sq float64
	for i := range n {
		if i < len(p) && p[i] > 0 {
			pp[i] = p[i]
			sp += p[i]
		}
		if i < len(q) && q[i] > 0 {
			qq[i] = q[i]
			sq += q[i]
		}
	}
	if sp <= 0 || sq <= 0 || math.IsInf(sp, 0) || math.IsInf(sq, 0) {
		return nil, nil, false
	}
	for i := range n {
		pp[i] /= sp
		qq[i] /= sq
	}
	return pp, qq, true
}
