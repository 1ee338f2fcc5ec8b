package serving

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2.5},
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
