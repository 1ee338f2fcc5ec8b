package analysis

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Window is what one set of servers did between two scrapes: counts, not totals.
type Window struct {
	// Requests are the inference requests answered, whatever the status.
	Requests float64 `json:"requests"`
	// Errors are the inference requests answered 5xx: the server's fault.
	Errors float64 `json:"errors"`
	// ClientErrors are the inference requests answered 4xx. They are the callers' fault, so no
	// check counts them, but a candidate that rejects what stable accepts shows up here.
	ClientErrors float64 `json:"client_errors"`
	// Latency is the inference latency histogram of the window, in seconds.
	Latency Histogram `json:"latency"`
	// Classes counts the rows predicted as each class (classification models).
	Classes []float64 `json:"classes,omitempty"`
	// Values are the moments of the predicted values (regression models).
	Values Moments      `json:"values"`
	Shadow ShadowWindow `json:"shadow"`
}

// ShadowWindow is what a live server that mirrors its traffic to a candidate counted in the
// window.
type ShadowWindow struct {
	// Mirrored are the requests sent to the candidate that came back, well or not (ok+error).
	Mirrored float64 `json:"mirrored"`
	// Failed are the mirrored requests the candidate failed (error).
	Failed float64 `json:"failed"`
	// Dropped are requests the live server did not mirror (its mirror queue was full): a
	// measure of the mirror, not of the candidate.
	Dropped float64 `json:"dropped"`
	// Agree and Disagree count mirrored rows by whether both models predicted the same.
	Agree            float64   `json:"agree"`
	Disagree         float64   `json:"disagree"`
	LiveClasses      []float64 `json:"live_classes,omitempty"`
	CandidateClasses []float64 `json:"candidate_classes,omitempty"`
	Live             Moments   `json:"live"`
	Candidate        Moments   `json:"candidate"`
	// Latency is the mirrored requests' latency, in seconds.
	Latency Histogram `json:"latency"`
}

// Delta is what happened between two scrapes of the same set of servers. A series that went
// down belongs to a process that restarted, so it counts from zero: its after value is taken
// as is, as Prometheus's rate() does.
func Delta(before, after *Snapshot) Window {
	if before == nil {
		before = &Snapshot{}
	}
	if after == nil {
		after = &Snapshot{}
	}
	var w Window
	for class, v := range after.Infer {
		d := counterDelta(before.Infer[class], v)
		w.Requests += d
		switch class {
		case "5xx":
			w.Errors += d
		case "4xx":
			w.ClientErrors += d
		}
	}
	w.Latency = histogramDelta(before.Latency, after.Latency)
	w.Classes = slicesDelta(before.Classes, after.Classes)
	w.Values = momentsDelta(before.Values, after.Values)

	b, a := before.Shadow, after.Shadow
	w.Shadow = ShadowWindow{
		Mirrored:         counterDelta(b.Requests["ok"], a.Requests["ok"]) + counterDelta(b.Requests["error"], a.Requests["error"]),
		Failed:           counterDelta(b.Requests["error"], a.Requests["error"]),
		Dropped:          counterDelta(b.Requests["dropped"], a.Requests["dropped"]),
		Agree:            counterDelta(b.Rows["agree"], a.Rows["agree"]),
		Disagree:         counterDelta(b.Rows["disagree"], a.Rows["disagree"]),
		LiveClasses:      slicesDelta(b.LiveClasses, a.LiveClasses),
		CandidateClasses: slicesDelta(b.CandidateClasses, a.CandidateClasses),
		Live:             momentsDelta(b.Live, a.Live),
		Candidate:        momentsDelta(b.Candidate, a.Candidate),
		Latency:          histogramDelta(b.Latency, a.Latency),
	}
	return w
}

// Add adds two windows, as of two pods Delta'd one by one (which catches a restart of one pod
// that a Sum of all pods could hide).
func (w Window) Add(o Window) Window {
	return Window{
		Requests:     w.Requests + o.Requests,
		Errors:       w.Errors + o.Errors,
		ClientErrors: w.ClientErrors + o.ClientErrors,
		Latency:      addHistograms(w.Latency, o.Latency),
		Classes:      addSlices(w.Classes, o.Classes),
		Values:       w.Values.add(o.Values),
		Shadow: ShadowWindow{
			Mirrored:         w.Shadow.Mirrored + o.Shadow.Mirrored,
			Failed:           w.Shadow.Failed + o.Shadow.Failed,
			Dropped:          w.Shadow.Dropped + o.Shadow.Dropped,
			Agree:            w.Shadow.Agree + o.Shadow.Agree,
			Disagree:         w.Shadow.Disagree + o.Shadow.Disagree,
			LiveClasses:      addSlices(w.Shadow.LiveClasses, o.Shadow.LiveClasses),
			CandidateClasses: addSlices(w.Shadow.CandidateClasses, o.Shadow.CandidateClasses),
			Live:             w.Shadow.Live.add(o.Shadow.Live),
			Candidate:        w.Shadow.Candidate.add(o.Shadow.Candidate),
			Latency:          addHistograms(w.Shadow.Latency, o.Shadow.Latency),
		},
	}
}

// ErrorRate is the share of inference requests answered 5xx, 0 with no requests.
func (w Window) ErrorRate() float64 {
	if w.Requests <= 0 {
		return 0
	}
	return w.Errors / w.Requests
}

// Quantile is the q-quantile (q in [0,1], clamped) of the window's inference latency, as PromQL's
// histogram_quantile computes it; 0 when the window has no latency observations.
func (w Window) Quantile(q float64) time.Duration {
	return seconds(w.Latency.Quantile(min(max(q, 0), 1)))
}

// P99 is the 99th percentile inference latency (see Quantile).
func (w Window) P99() time.Duration { return w.Quantile(0.99) }

// seconds converts a latency in seconds to a Duration, NaN (no data) to 0.
func seconds(v float64) time.Duration {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return time.Duration(math.Round(v * float64(time.Second)))
}

// Quantile is the q-quantile of the observations, computed like PromQL's histogram_quantile:
// find the bucket the q·count-th observation falls in and interpolate linearly inside it,
// taking the lowest bucket to start at 0. A quantile in the +Inf bucket is the highest finite
// bound (nothing better is known). NaN without observations or finite buckets; -Inf/+Inf for
// q below 0/above 1.
func (h Histogram) Quantile(q float64) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(+1)
	case h.Count <= 0 || len(h.Buckets) == 0:
		return math.NaN()
	}
	buckets := append(slices.Clone(h.Buckets), Bucket{UpperBound: math.Inf(+1), Count: h.Count})
	// Counts scraped at slightly different moments can dip; PromQL forces them monotonic.
	for i := 1; i < len(buckets); i++ {
		buckets[i].Count = max(buckets[i].Count, buckets[i-1].Count)
	}
	observations := buckets[len(buckets)-1].Count
	rank := q * observations
	b := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].Count >= rank })
	if b == len(buckets)-1 {
		return buckets[len(buckets)-2].UpperBound
	}
	if b == 0 && buckets[0].UpperBound <= 0 {
		return buckets[0].UpperBound
	}
	start, end, count := 0.0, buckets[b].UpperBound, buckets[b].Count
	if b > 0 {
		start = buckets[b-1].UpperBound
		count -= buckets[b-1].Count
		rank -= buckets[b-1].Count
	}
	if count <= 0 { // only q=0 over an empty first bucket
		return start
	}
	return start + (end-start)*(rank/count)
}

// counterDelta is a counter's increase; a counter that went down restarted from zero.
func counterDelta(before, after float64) float64 {
	if after < before {
		return after
	}
	return after - before
}

// slicesDelta is counterDelta class by class.
func slicesDelta(before, after []float64) []float64 {
	if len(after) == 0 {
		return nil
	}
	out := make([]float64, len(after))
	for i, a := range after {
		var b float64
		if i < len(before) {
			b = before[i]
		}
		out[i] = counterDelta(b, a)
	}
	return out
}

// momentsDelta takes the count as the series that shows a restart: the sums are gauges (values
// may be negative) and may go down on their own.
func momentsDelta(before, after Moments) Moments {
	if after.Count < before.Count {
		return after
	}
	return Moments{Count: after.Count - before.Count, Sum: after.Sum - before.Sum, SumSquares: after.SumSquares - before.SumSquares}
}

// histogramDelta is the histogram of the observations between two scrapes; any bucket or the
// count going down means the process restarted and after is taken as is.
func histogramDelta(before, after Histogram) Histogram {
	if after.Count < before.Count || after.Sum < before.Sum {
		return after
	}
	out := Histogram{Count: after.Count - before.Count, Sum: after.Sum - before.Sum}
	for _, b := range after.Buckets {
		d := b.Count - before.at(b.UpperBound)
		if d < 0 {
			return after
		}
		out.Buckets = append(out.Buckets, Bucket{UpperBound: b.UpperBound, Count: d})
	}
	return out
}
