package examples

import "math"

// classificationMetrics scores predicted against labels: the share correct, each class's
// recall, and the unweighted mean over classes of F1. A class never predicted and never
// present counts as F1 0, as scikit-learn's zero_division=0 does.
func classificationMetrics(labels, predicted []int, classes int) (accuracy float64, recall []float64, macroF1 float64) {
	truePos := make([]int, classes)
	actual := make([]int, classes)
	guessed := make([]int, classes)
	for i, label := range labels {
		actual[label]++
		guessed[predicted[i]]++
		if predicted[i] == label {
			truePos[label]++
		}
	}
	correct := 0
	recall = make([]float64, classes)
	for c := 0; c < classes; c++ {
		correct += truePos[c]
		recall[c] = ratio(truePos[c], actual[c])
		precision := ratio(truePos[c], guessed[c])
		if precision+recall[c] > 0 {
			macroF1 += 2 * precision * recall[c] / (precision + recall[c])
		}
	}
	return ratio(correct, len(labels)), recall, macroF1 / float64(classes)
}

func ratio(num, den int) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// regressionMetrics scores predicted against targets: mean absolute error, root mean squared
// error, and R², the share of the targets' variance about their own mean that is explained.
func regressionMetrics(targets, predicted []float64) (mae, rmse, r2 float64) {
	n := float64(len(targets))
	mean := 0.0
	for _, y := range targets {
		mean += y
	}
	mean /= n
	var absErr, sqErr, sqTotal float64
	for i, y := range targets {
		d := predicted[i] - y
		absErr += math.Abs(d)
		sqErr += float64(d * d)
		sqTotal += float64((y - mean) * (y - mean))
	}
	return absErr / n, math.Sqrt(sqErr / n), 1 - sqErr/sqTotal
}
