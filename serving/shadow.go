package serving

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/serving/oip"
)

// Shadow mirroring: a live server sends a copy of (a sample of) its successful inference
// requests to a candidate server and counts how often the two models agree, so a new model
// version is judged on production traffic before it answers anyone. The live answer never
// waits for the candidate and never changes: the copy goes onto a bounded queue that a few
// workers drain, and a full queue drops the copy rather than hold the request.

// Defaults for Config's shadow settings.
const (
	DefaultShadowTimeout = 2 * time.Second
	DefaultShadowQueue   = 256
)

// ShadowHeader marks a mirrored request. A server does not mirror a request that carries it,
// so two servers that shadow each other cannot bounce requests back and forth.
const ShadowHeader = "X-Modelship-Shadow"

// shadowWorkers is how many mirrored requests are in flight at once: the candidate is one
// server, and mirroring must take little of the live server's CPU; the queue absorbs bursts.
const shadowWorkers = 2

// shadowWarnEvery is how often, at most, a failing candidate is logged.
const shadowWarnEvery = time.Minute

// CheckShadowURL says why raw cannot be a shadow candidate's base URL, or nil: it must be
// http or https with a host, and no query or fragment (the inference path is appended to it).
func CheckShadowURL(raw string) error {
	const want = "want the candidate server's base URL, e.g. http://10.0.0.7:8000"
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL (%w); %s", raw, err, want)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL with a host; %s", raw, want)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("%q has a query or fragment; %s (the /v2/models/... path is added to it)", raw, want)
	}
	return nil
}

// CheckShadowSample says why f cannot be the fraction of requests mirrored, or nil.
func CheckShadowSample(f float64) error {
	if !(f > 0 && f <= 1) {
		return fmt.Errorf("%v is not a fraction in (0, 1]; e.g. 0.1 mirrors one inference request in ten, 1 all of them", f)
	}
	return nil
}

// shadow mirrors inference requests to a candidate server.
type shadow struct {
	url, model    string
	input, output string // the live model's input name, and its first output's
	features      int
	sample        float64
	timeout       time.Duration
	client        *oip.Client
	transport     *http.Transport
	queue         chan *mirror
	metrics       *shadowMetrics
	logger        *slog.Logger

	// ctx ends when the server stops; it cancels the mirrored requests in flight.
	ctx      context.Context
	cancel   context.CancelFunc
	workers  sync.WaitGroup
	stopOnce sync.Once

	warnMu            sync.Mutex
	lastWarn          time.Time
	failuresSinceWarn int
}

// mirror is one mirrored request: copies of what the live request sent and was answered,
// since the request's own buffers are reused as soon as it is answered.
type mirror struct {
	rows, width int       // width: values per row of the first output
	data        []float32 // rows × features inputs
	live        []float32 // per row, the live model's class index (width ≥ 2) or value (width 1)
}

// newShadow sets cfg's shadow defaults, checks them and starts the workers; nil without a
// ShadowURL.
func newShadow(cfg *Config, model *inference.Model, reg prometheus.Registerer) (*shadow, error) {
	if cfg.ShadowURL == "" {
		return nil, nil
	}
	if err := CheckShadowURL(cfg.ShadowURL); err != nil {
		return nil, fmt.Errorf("serving: ShadowURL: %w", err)
	}
	if cfg.ShadowSample == 0 {
		cfg.ShadowSample = 1
	}
	if err := CheckShadowSample(cfg.ShadowSample); err != nil {
		return nil, fmt.Errorf("serving: ShadowSample: %w", err)
	}
	if cfg.ShadowModel == "" {
		cfg.ShadowModel = cfg.ModelName
	}
	// The name goes into the URL path as it is, as the client sends it.
	if url.PathEscape(cfg.ShadowModel) != cfg.ShadowModel {
		return nil, fmt.Errorf("serving: ShadowModel %q is not a plain model name; use the name the candidate serves its model under", cfg.ShadowModel)
	}
	if cfg.ShadowTimeout <= 0 {
		cfg.ShadowTimeout = DefaultShadowTimeout
	}
	if cfg.ShadowQueue <= 0 {
		cfg.ShadowQueue = DefaultShadowQueue
	}
	// A transport of its own, so stopping can close its idle connections (and their
	// goroutines), and with the marker on every request the oip client sends.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = shadowWorkers
	client := oip.NewClient(cfg.ShadowURL)
	client.HTTP = &http.Client{Transport: markShadow{transport}, Timeout: cfg.ShadowTimeout}
	sh := &shadow{url: cfg.ShadowURL, model: cfg.ShadowModel, input: model.Input().Name, features: model.Features(),
		sample: cfg.ShadowSample, timeout: cfg.ShadowTimeout, client: client, transport: transport,
		queue: make(chan *mirror, cfg.ShadowQueue), metrics: newShadowMetrics(reg, outputWidth(model)), logger: cfg.Logger}
	if outs := model.Outputs(); len(outs) > 0 {
		sh.output = outs[0].Name
	}
	sh.ctx, sh.cancel = context.WithCancel(context.Background())
	for range shadowWorkers {
		sh.workers.Add(1)
		go sh.work()
	}
	cfg.Logger.Info("mirroring inference requests to a shadow candidate", "shadow_url", sh.url, "shadow_model", sh.model,
		"sample", sh.sample, "timeout", sh.timeout.String(), "queue", cfg.ShadowQueue)
	return sh, nil
}

// markShadow sets ShadowHeader on every request.
type markShadow struct{ next http.RoundTripper }

func (m markShadow) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set(ShadowHeader, "1")
	return m.next.RoundTrip(r)
}

// afterInference runs once a request's answer is known good, before it is written: it counts
// the predictions and, if the request is sampled, mirrors it. The answer is not touched.
func (s *Server) afterInference(r *http.Request, batch *Batch, outs []inference.Output) {
	if len(outs) == 0 || batch.Rows <= 0 {
		return
	}
	width := len(outs[0].Data) / batch.Rows
	if width == 0 {
		return
	}
	var m *mirror
	if s.shadow != nil && s.shadow.wants(r) {
		m = s.shadow.copyOf(batch, width)
	}
	var live []float32
	if m != nil {
		live = m.live
	}
	s.metrics.predictions.observe(outs[0].Data[:batch.Rows*width], batch.Rows, width, live)
	if m != nil {
		s.shadow.enqueue(m)
	}
}

// Close stops the shadow workers of a server used through Handler without Serve (Serve stops
// them when it returns), dropping what is queued. Call it once the server takes no more
// requests; calling it again does nothing.
func (s *Server) Close() {
	s.shadow.stop()
}

// wants reports whether to mirror this request: not one that is itself mirrored, and only the
// sampled fraction.
func (sh *shadow) wants(r *http.Request) bool {
	if r.Header.Get(ShadowHeader) != "" {
		return false
	}
	return sh.sample >= 1 || rand.Float64() < sh.sample
}

func (sh *shadow) copyOf(batch *Batch, width int) *mirror {
	n := batch.Rows * sh.features
	buf := make([]float32, n+batch.Rows) // one allocation for both
	copy(buf, batch.Data[:n])
	return &mirror{rows: batch.Rows, width: width, data: buf[:n:n], live: buf[n:]}
}

// enqueue hands m to the workers, or counts it dropped when they are behind: the live request
// does not wait.
func (sh *shadow) enqueue(m *mirror) {
	if sh.ctx.Err() != nil {
		return
	}
	select {
	case sh.queue <- m:
	default:
		sh.metrics.dropped.Inc()
	}
}

// stop cancels the mirrors in flight, drops the queued ones and waits for the workers.
func (sh *shadow) stop() {
	if sh == nil {
		return
	}
	sh.stopOnce.Do(func() {
		sh.cancel()
		sh.workers.Wait()
		for len(sh.queue) > 0 {
			<-sh.queue
		}
		sh.transport.CloseIdleConnections()
	})
}

func (sh *shadow) work() {
	defer sh.workers.Done()
	for {
		select {
		case <-sh.ctx.Done():
			return
		case m := <-sh.queue:
			sh.send(m)
		}
	}
}

// send mirrors one request and compares the candidate's answer with the live one, row by row.
func (sh *shadow) send(m *mirror) {
	rows := make([][]float32, m.rows)
	for i := range rows {
		rows[i] = m.data[i*sh.features : (i+1)*sh.features]
	}
	ctx, cancel := context.WithTimeout(sh.ctx, sh.timeout)
	defer cancel()
	start := time.Now()
	resp, err := sh.client.Infer(ctx, sh.model, sh.input, rows)
	elapsed := time.Since(start)
	if sh.ctx.Err() != nil {
		return // the server is stopping: no verdict on the candidate
	}
	// Failures too: a candidate that times out is slow, and leaving it out would make it look fast.
	sh.metrics.duration.Observe(elapsed.Seconds())
	var cand []float32
	if err == nil {
		cand, err = sh.candidateOutput(resp, m)
	}
	if err != nil {
		sh.metrics.failed.Inc()
		sh.warn(err)
		return
	}
	// Rows are counted before the mirror is: whoever sees a mirror ended (a test, an analysis
	// scrape) then sees all of its rows.
	sh.compare(m, cand)
	sh.metrics.ok.Inc()
}

// candidateOutput is the candidate's output to compare with the live first output: the one of
// the same name, else its first; it must have the live one's rows and width.
func (sh *shadow) candidateOutput(resp *oip.InferResponse, m *mirror) ([]float32, error) {
	if len(resp.Outputs) == 0 {
		return nil, fmt.Errorf("shadow candidate %s answered no outputs", sh.url)
	}
	out := resp.Outputs[0]
	for _, o := range resp.Outputs {
		if o.Name == sh.output {
			out = o
			break
		}
	}
	if len(out.Shape) == 0 || out.Shape[0] != int64(m.rows) || len(out.Data) != m.rows*m.width {
		return nil, fmt.Errorf("shadow candidate %s answered output %q with shape %v (%d values), but the live model answers %d rows of %d values: the models are not comparable (check the shadow model name %q)",
			sh.url, out.Name, out.Shape, len(out.Data), m.rows, m.width, sh.model)
	}
	return out.Data, nil
}

// compare counts the rows on which the candidate agrees with the live model, and what each
// predicted.
func (sh *shadow) compare(m *mirror, cand []float32) {
	agree := 0
	if m.width == 1 {
		for i := range m.rows {
			if valuesAgree(m.live[i], cand[i]) {
				agree++
			}
		}
		live, candidate := sh.metrics.values()
		live.observe(m.live, nil)
		candidate.observe(cand, nil)
	} else {
		live, candidate := sh.metrics.liveClasses.upTo(m.width), sh.metrics.candidateClasses.upTo(m.width)
		for i := range m.rows {
			l, c := int(m.live[i]), inference.ArgmaxRow(cand[i*m.width:(i+1)*m.width])
			live[l].Inc()
			candidate[c].Inc()
			if l == c {
				agree++
			}
		}
	}
	sh.metrics.agree.Add(float64(agree))
	sh.metrics.disagree.Add(float64(m.rows - agree))
}

// valuesAgree is a regressor's agreement: within 1% of the live value, or 1e-6 of it near zero.
func valuesAgree(live, candidate float32) bool {
	l := float64(live)
	return math.Abs(l-float64(candidate)) <= max(0.01*math.Abs(l), 1e-6)
}

// warn logs a failed mirror, the first at once and then at most one per shadowWarnEvery with
// the count since: a candidate that is down fails every request, and one line each would
// drown the log.
func (sh *shadow) warn(err error) {
	sh.warnMu.Lock()
	sh.failuresSinceWarn++
	now := time.Now()
	if !sh.lastWarn.IsZero() && now.Sub(sh.lastWarn) < shadowWarnEvery {
		sh.warnMu.Unlock()
		return
	}
	n := sh.failuresSinceWarn
	sh.failuresSinceWarn, sh.lastWarn = 0, now
	sh.warnMu.Unlock()
	sh.logger.Warn("mirroring to the shadow candidate failed; live answers are unaffected (see modelship_shadow_requests_total{result=\"error\"}); check that the candidate runs and serves the model",
		"shadow_url", sh.url, "shadow_model", sh.model, "error", err.Error(), "failures", n, "next_report_within", shadowWarnEvery.String())
}

// shadowMetrics are the shadow series, registered only on a server that mirrors.
type shadowMetrics struct {
	ok, failed, dropped           prometheus.Counter
	agree, disagree               prometheus.Counter
	liveClasses, candidateClasses *classCounters
	duration                      prometheus.Histogram
	reg                           prometheus.Registerer
	valuesOnce                    sync.Once
	liveValues, candidateValues   moments
}

func newShadowMetrics(reg prometheus.Registerer, width int) *shadowMetrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelship_shadow_requests_total",
		Help: "Inference requests mirrored to the shadow candidate, by result: ok (answered), error (transport error, timeout, non-200 or an answer of the wrong shape), dropped (the mirror queue was full).",
	}, []string{"result"})
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelship_shadow_rows_total",
		Help: "Mirrored rows the candidate answered, by whether it agrees with the live model: the same class, or for a regressor a value within 1% (at least 1e-6) of the live one.",
	}, []string{"result"})
	classes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelship_shadow_predictions_total",
		Help: "Mirrored rows the candidate answered, by the class each side predicted (source live or candidate); classifiers only.",
	}, []string{"source", "class"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "modelship_shadow_duration_seconds", Help: "Round trip of a mirrored request to the shadow candidate, answered or failed (a timeout counts as the timeout).",
		Buckets: latencyBuckets,
	})
	reg.MustRegister(requests, rows, classes, duration)
	m := &shadowMetrics{
		ok: requests.WithLabelValues("ok"), failed: requests.WithLabelValues("error"), dropped: requests.WithLabelValues("dropped"),
		agree: rows.WithLabelValues("agree"), disagree: rows.WithLabelValues("disagree"),
		liveClasses:      newClassCounters(classes.MustCurryWith(prometheus.Labels{"source": "live"})),
		candidateClasses: newClassCounters(classes.MustCurryWith(prometheus.Labels{"source": "candidate"})),
		duration:         duration, reg: reg,
	}
	switch {
	case width == 1:
		m.values()
	case width >= 2:
		m.liveClasses.upTo(width)
		m.candidateClasses.upTo(width)
	}
	return m
}

// values are the live and candidate moments of a regressor's mirrored rows, registered on
// first use.
func (m *shadowMetrics) values() (live, candidate moments) {
	m.valuesOnce.Do(func() {
		count := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelship_shadow_values_total", Help: "Mirrored rows of a regressor the candidate answered, by source (live or candidate).",
		}, []string{"source"})
		sum := prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelship_shadow_value_sum", Help: "Sum of the values predicted for mirrored rows, by source (live or candidate).",
		}, []string{"source"})
		squares := prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelship_shadow_value_squares_sum", Help: "Sum of the squares of the values predicted for mirrored rows, by source (live or candidate).",
		}, []string{"source"})
		m.reg.MustRegister(count, sum, squares)
		m.liveValues = moments{count: count.WithLabelValues("live"), sum: sum.WithLabelValues("live"), squares: squares.WithLabelValues("live")}
		m.candidateValues = moments{count: count.WithLabelValues("candidate"), sum: sum.WithLabelValues("candidate"), squares: squares.WithLabelValues("candidate")}
	})
	return m.liveValues, m.candidateValues
}
