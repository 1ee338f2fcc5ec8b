package serving

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelship/modelship/internal/ml/inference"
)

// latencyBuckets are the request latency histograms' buckets, in seconds: the live requests'
// and the mirrored ones', so the two compare bucket for bucket.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2.5}

// metrics are the server's Prometheus series, on a registry of its own so several servers can
// live in one process (tests) without clashing.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	inFlight  prometheus.Gauge
	duration  *prometheus.HistogramVec
	inference prometheus.Histogram
	rows      prometheus.Counter
	errors    *prometheus.CounterVec
	ready     prometheus.Gauge
	// predictions counts what the model answered, so a canary or shadow analysis can compare
	// two versions' prediction distributions; set up by watchPredictions.
	predictions *predictions
}

func newMetrics(modelName, modelVersion, sha256, backend string) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelship_http_requests_total", Help: "HTTP requests by handler, method and status code.",
		}, []string{"handler", "method", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelship_http_requests_in_flight", Help: "API requests being served now (not counting /metrics).",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "modelship_http_request_duration_seconds", Help: "HTTP request latency by handler, from first byte read to response written.",
			Buckets: latencyBuckets,
		}, []string{"handler", "method"}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "modelship_inference_duration_seconds", Help: "Time the model spends on one batch.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .2},
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelship_inference_rows_total", Help: "Rows (samples) run through the model.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelship_inference_errors_total", Help: "Inference requests that failed, by reason (bad_request, too_large, unsupported_media_type, overloaded, non_finite_output, model_error).",
		}, []string{"reason"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelship_model_ready", Help: "1 once the model is loaded and warmed up, 0 before and while shutting down.",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelship_model_info", Help: "The model this server runs.",
		ConstLabels: prometheus.Labels{"name": modelName, "version": modelVersion, "sha256": sha256, "backend": backend},
	})
	info.Set(1)
	for _, reason := range []string{"bad_request", "too_large", "unsupported_media_type", "overloaded", "non_finite_output", "model_error"} {
		m.errors.WithLabelValues(reason)
	}
	reg.MustRegister(m.requests, m.inFlight, m.duration, m.inference, m.rows, m.errors, m.ready, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instrument counts and times every request to one named handler: the series promhttp's
// InstrumentHandlerInFlight, InstrumentHandlerCounter and InstrumentHandlerDuration give, with
// their label values, but resolved once per method and status code instead of through a label
// map and two response writer wrappers per request (together a sixth of a one-row request).
func (m *metrics) instrument(name string, h http.Handler) http.Handler {
	i := &instrumented{next: h, inFlight: m.inFlight,
		requests: m.requests.MustCurryWith(prometheus.Labels{"handler": name}),
		duration: m.duration.MustCurryWith(prometheus.Labels{"handler": name})}
	return i
}

// instrumented is one handler's instrumentation, with the series it has used so far.
type instrumented struct {
	next     http.Handler
	inFlight prometheus.Gauge
	requests *prometheus.CounterVec
	duration prometheus.ObserverVec
	counters sync.Map // seriesKey -> prometheus.Counter
	timers   sync.Map // method -> prometheus.Observer
}

type seriesKey struct {
	method string
	code   int
}

func (i *instrumented) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i.inFlight.Inc()
	defer i.inFlight.Dec()
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	i.next.ServeHTTP(sw, r)
	method := metricMethod(r.Method)
	i.timer(method).Observe(time.Since(start).Seconds())
	i.counter(method, sw.status).Inc()
}

func (i *instrumented) timer(method string) prometheus.Observer {
	if o, ok := i.timers.Load(method); ok {
		return o.(prometheus.Observer)
	}
	o, _ := i.timers.LoadOrStore(method, i.duration.WithLabelValues(method))
	return o.(prometheus.Observer)
}

func (i *instrumented) counter(method string, status int) prometheus.Counter {
	key := seriesKey{method, status}
	if c, ok := i.counters.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c, _ := i.counters.LoadOrStore(key, i.requests.WithLabelValues(method, metricCode(status)))
	return c.(prometheus.Counter)
}

// metricMethod is promhttp's method label: the standard methods in lower case, others "unknown",
// so a client cannot make a series per made-up method.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch, "NOTIFY":
		return strings.ToLower(m)
	case "get", "post", "head", "put", "delete", "connect", "options", "trace", "patch", "notify":
		return m
	}
	return "unknown"
}

// metricCode is promhttp's code label: a handler that wrote nothing answered 200.
func metricCode(status int) string {
	switch {
	case status == 0:
		return "200"
	case status >= 100 && status <= 599:
		return strconv.Itoa(status)
	}
	return "unknown"
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's own writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// outputWidth is the width of one row of the model's first output as its graph declares it
// (the last dimension), or 0 when the graph leaves it open and only answers will tell.
func outputWidth(model *inference.Model) int {
	outs := model.Outputs()
	if len(outs) == 0 || len(outs[0].Shape) < 2 {
		return 0
	}
	return int(max(outs[0].Shape[len(outs[0].Shape)-1], 0))
}

// predictions are the series of what the model predicted, from its first output: per class for
// a classifier (a row of two or more scores), the moments of the values for a regressor (a row
// of one value).
type predictions struct {
	classes *classCounters
	values  *lazyMoments
}

func newPredictions(reg prometheus.Registerer, width int) *predictions {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelship_predictions_total", Help: "Rows answered, by the class the model predicted (the argmax of its first output); classifiers only.",
	}, []string{"class"})
	reg.MustRegister(vec)
	p := &predictions{classes: newClassCounters(vec), values: newLazyMoments(reg, func() moments {
		count := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelship_prediction_values_total", Help: "Rows answered by a regression model (one value per row).",
		})
		sum := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelship_prediction_value_sum", Help: "Sum of the values a regression model predicted.",
		})
		squares := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelship_prediction_value_squares_sum", Help: "Sum of the squares of the values a regression model predicted.",
		})
		return moments{count: count, sum: sum, squares: squares, collectors: []prometheus.Collector{count, sum, squares}}
	})}
	// Series that exist at 0 from the start let a scrape tell "never predicted" from "no data",
	// and a rate over them works from the first scrape.
	switch {
	case width == 1:
		p.values.get()
	case width >= 2:
		p.classes.upTo(width)
	}
	return p
}

// observe counts the rows of one answer: data is rows × width values of the first output. With
// live non-nil (len rows), it also gets each row's prediction: the class index for a
// classifier, the value for a regressor. This runs on every request: the counters are
// resolved once, and a row costs an argmax and an atomic add.
func (p *predictions) observe(data []float32, rows, width int, live []float32) {
	if width == 1 {
		p.values.get().observe(data[:rows], live)
		return
	}
	counters := p.classes.upTo(width)
	for i := range rows {
		c := inference.ArgmaxRow(data[i*width : (i+1)*width])
		counters[c].Inc()
		if live != nil {
			live[i] = float32(c)
		}
	}
}

// classCounters are a counter family's series by class index, resolved once: looking a series up
// by its label value hashes the value and takes a lock, too much for every row of every request.
type classCounters struct {
	vec      *prometheus.CounterVec // labelled "class" (curried down to it if it has more labels)
	mu       sync.Mutex
	resolved atomic.Pointer[[]prometheus.Counter]
}

func newClassCounters(vec *prometheus.CounterVec) *classCounters { return &classCounters{vec: vec} }

// upTo is the counters of classes 0..width-1 (and perhaps more).
func (c *classCounters) upTo(width int) []prometheus.Counter {
	if p := c.resolved.Load(); p != nil && len(*p) >= width {
		return *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var have []prometheus.Counter
	if p := c.resolved.Load(); p != nil {
		have = *p
	}
	if len(have) >= width {
		return have
	}
	// A new slice, never a grown one: readers hold the old one without the lock.
	next := make([]prometheus.Counter, width)
	copy(next, have)
	for i := len(have); i < width; i++ {
		next[i] = c.vec.WithLabelValues(strconv.Itoa(i))
	}
	c.resolved.Store(&next)
	return next
}

// moments are the count, sum and sum of squares of predicted values: what the mean and variance
// of a regressor's predictions are computed from, without keeping the values. The sums are
// gauges because a sum of negative predictions goes down.
type moments struct {
	count        prometheus.Counter
	sum, squares prometheus.Gauge
	collectors   []prometheus.Collector // what to register: the series, or the families they are of
}

// observe adds values, skipping non-finite ones (possible only in an output the client did not
// ask for; one NaN would make the sums useless for good). With live non-nil, it gets the values.
func (m moments) observe(values []float32, live []float32) {
	var n, sum, squares float64
	for i, v := range values {
		if live != nil {
			live[i] = v
		}
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		n++
		sum += f
		squares += f * f
	}
	m.count.Add(n)
	m.sum.Add(sum)
	m.squares.Add(squares)
}

// lazyMoments registers its moments' series only once a model turns out to be a regressor, so a
// classifier's page carries no regression series that would read as "predicted 0 values".
type lazyMoments struct {
	once  sync.Once
	reg   prometheus.Registerer
	build func() moments
	m     moments
}

func newLazyMoments(reg prometheus.Registerer, build func() moments) *lazyMoments {
	return &lazyMoments{reg: reg, build: build}
}

func (l *lazyMoments) get() moments {
	l.once.Do(func() {
		l.m = l.build()
		l.reg.MustRegister(l.m.collectors...)
	})
	return l.m
}
