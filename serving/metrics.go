package serving

import (
	"net/http"

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

// instrument counts and times every request to one named handler.
func (m *metrics) instrument(name string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerInFlight(m.inFlight,
		promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(labels),
			promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(labels), h)))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
