// Package serving is the model server: the Open Inference Protocol (KServe v2) REST API over
// one ONNX model, with Prometheus metrics, request limits and graceful shutdown.
package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelship/modelship/internal/ml/inference"
)

// Defaults for Config's limits.
const (
	DefaultMaxBodyBytes    = 4 << 20
	DefaultMaxBatch        = 1024
	DefaultShutdownTimeout = 30 * time.Second
	DefaultQueueTimeout    = 5 * time.Second
)

// DefaultMaxInFlight bounds the inference requests read, decoded and run at once: inference is
// CPU-bound, so more than a couple per core only adds memory, not throughput.
func DefaultMaxInFlight() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// Config is what a Server is built with.
type Config struct {
	ModelName       string
	ModelVersion    string
	ServerVersion   string        // this binary's version, reported by GET /v2
	MaxBodyBytes    int64         // inference request bodies over this get 413
	MaxBatch        int           // rows per request at most
	ShutdownTimeout time.Duration // how long in-flight requests get after a stop signal
	// MaxInFlight inference requests are read, decoded and run at once; the others wait up to
	// QueueTimeout for a turn, then get 503 with Retry-After. Memory is bounded by
	// MaxInFlight × MaxBodyBytes, not by how many clients call.
	MaxInFlight  int
	QueueTimeout time.Duration
	// BatchMaxDelay > 0 runs concurrent requests through the model together (see batcher): the
	// requests that arrive while the model runs go in its next run, and a run waits up to this
	// long for requests still being read. 0 runs each request on its own.
	BatchMaxDelay time.Duration
	Logger        *slog.Logger

	// ShadowURL, when set, is the base URL of a candidate server (e.g. http://10.0.0.7:8000)
	// that gets a copy of ShadowSample of the successful inference requests (0 means all),
	// sent to its model ShadowModel (default ModelName) after the live answer is known and
	// without delaying it; a copy that finds ShadowQueue (default DefaultShadowQueue) copies
	// waiting is dropped. Each copy gets ShadowTimeout (default DefaultShadowTimeout). The
	// modelship_shadow_* series count how the two models agree. See shadow.go.
	ShadowURL     string
	ShadowSample  float64
	ShadowModel   string
	ShadowTimeout time.Duration
	ShadowQueue   int
}

// Server serves one model.
type Server struct {
	cfg     Config
	model   *inference.Model
	spec    InputSpec
	metrics *metrics
	ready   atomic.Bool
	handler http.Handler
	slots   chan struct{} // one per inference request in flight
	batcher *batcher      // nil without batching
	queued  atomic.Int32  // requests waiting for a slot
	shadow  *shadow       // nil unless mirroring to a candidate
}

// New wires the HTTP API around a loaded model. The server is not ready until WarmUp passes.
func New(model *inference.Model, cfg Config) (*Server, error) {
	if model == nil {
		return nil, errors.New("serving: no model")
	}
	if cfg.ModelName == "" {
		return nil, errors.New("serving: the model needs a name")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight()
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = DefaultQueueTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, model: model, metrics: newMetrics(cfg.ModelName, cfg.ModelVersion, model.SHA256(), string(model.Backend())),
		slots: make(chan struct{}, cfg.MaxInFlight)}
	s.spec = InputSpec{Name: model.Input().Name, Features: model.Features(), MaxBatch: cfg.MaxBatch}
	for _, o := range model.Outputs() {
		s.spec.Outputs = append(s.spec.Outputs, o.Name)
	}
	if cfg.BatchMaxDelay > 0 {
		s.batcher = newBatcher(model, cfg.MaxBatch, cfg.MaxInFlight, cfg.BatchMaxDelay, func() int { return min(cap(s.slots), len(s.slots)+int(s.queued.Load())) },
			func(d time.Duration) { s.metrics.inference.Observe(d.Seconds()) })
	}
	s.metrics.predictions = newPredictions(s.metrics.registry, outputWidth(model))
	var err error
	if s.shadow, err = newShadow(&s.cfg, model, s.metrics.registry); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, name string, allowed string, h http.HandlerFunc) {
		mux.Handle(pattern, s.metrics.instrument(name, onlyMethod(allowed, h)))
	}
	handle("/v2/health/live", "live", http.MethodGet, s.live)
	handle("/v2/health/ready", "ready", http.MethodGet, s.readyz)
	handle("/v2", "server_metadata", http.MethodGet, s.serverMetadata)
	handle("/v2/models/{name}", "model_metadata", http.MethodGet, s.modelMetadata)
	handle("/v2/models/{name}/versions/{version}", "model_metadata", http.MethodGet, s.modelMetadata)
	handle("/v2/models/{name}/ready", "model_ready", http.MethodGet, s.modelReady)
	handle("/v2/models/{name}/versions/{version}/ready", "model_ready", http.MethodGet, s.modelReady)
	handle("/v2/models/{name}/infer", "infer", http.MethodPost, s.infer)
	handle("/v2/models/{name}/versions/{version}/infer", "infer", http.MethodPost, s.infer)
	mux.Handle("/metrics", s.metrics.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s; see /v2/health/ready, /v2/models/%s and /v2/models/%s/infer", r.Method, r.URL.Path, s.cfg.ModelName, s.cfg.ModelName))
	})
	return mux
}

// onlyMethod answers other methods with a JSON 405, which ServeMux's own 405 is not.
func onlyMethod(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	}
}

// Handler is the whole HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready reports whether the model has passed its warm-up and the server is not stopping.
func (s *Server) Ready() bool { return s.ready.Load() }

// WarmUp runs one all-zero row through the model; only then does the server report ready.
func (s *Server) WarmUp() error {
	start := time.Now()
	if _, err := s.model.Infer(1, make([]float32, s.model.Features())); err != nil {
		return fmt.Errorf("warm-up inference on model %q: %w", s.cfg.ModelName, err)
	}
	s.setReady(true)
	s.cfg.Logger.Info("model ready", "model", s.cfg.ModelName, "version", s.cfg.ModelVersion, "warmup", time.Since(start).String())
	return nil
}

func (s *Server) setReady(v bool) {
	s.ready.Store(v)
	if v {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

// Serve runs the API on ln until ctx is cancelled, then stops taking new work, lets in-flight
// requests finish (up to ShutdownTimeout) and returns. It stops the shadow mirroring too.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Deferred past the graceful shutdown, when no request is left to queue a copy; the copies
	// still queued then are dropped, since the candidate's verdict on them would go unscraped.
	defer s.Close()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.cfg.Logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.setReady(false)
	s.cfg.Logger.Info("shutting down: finishing in-flight requests", "timeout", s.cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	s.cfg.Logger.Info("shutdown complete")
	return nil
}

func (s *Server) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (s *Server) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "modelship", "version": s.cfg.ServerVersion, "extensions": []string{}})
}

func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	if !s.knownModel(w, r) {
		return
	}
	meta := ModelMetadata{
		Name: s.cfg.ModelName, Platform: "onnx",
		Inputs: []inference.TensorSpec{s.model.Input()}, Outputs: s.model.Outputs(),
		Params: map[string]string{"sha256": s.model.SHA256(), "backend": string(s.model.Backend()),
			"opset": strconv.FormatInt(s.model.DeclaredOpset(), 10)},
	}
	if s.cfg.ModelVersion != "" {
		meta.Versions = []string{s.cfg.ModelVersion}
	}
	if labels := s.model.Property("labels"); labels != "" {
		meta.Params["labels"] = labels
	}
	writeJSON(w, http.StatusOK, meta)
}

func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	if !s.knownModel(w, r) {
		return
	}
	s.readyz(w, r)
}

// knownModel answers 404 unless the path names this server's model (and version, if given).
func (s *Server) knownModel(w http.ResponseWriter, r *http.Request) bool {
	name, version := r.PathValue("name"), r.PathValue("version")
	if name != s.cfg.ModelName {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found; this server serves %q", name, s.cfg.ModelName))
		return false
	}
	if version != "" && version != s.cfg.ModelVersion {
		writeError(w, http.StatusNotFound, fmt.Sprintf("version %q of model %q not found; this server serves version %q", version, name, s.cfg.ModelVersion))
		return false
	}
	return true
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	if !s.knownModel(w, r) {
		return
	}
	if !s.Ready() {
		writeError(w, http.StatusServiceUnavailable, "the model is not ready yet; wait for /v2/health/ready")
		return
	}
	if msg := unsupportedEncoding(r); msg != "" {
		s.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", msg)
		return
	}
	// The turn is taken before the body is read, so a waiting request holds no more than its
	// connection.
	if !s.takeTurn(r.Context()) {
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusServiceUnavailable, "overloaded",
			fmt.Sprintf("the server is busy (%d requests in flight, none finished within %s); retry after a second", s.cfg.MaxInFlight, s.cfg.QueueTimeout))
		return
	}
	defer s.leave()
	buf := getBuffer()
	defer putBuffer(buf)
	batch, err := s.readBatch(w, r, buf)
	if err != nil {
		s.refuse(w, err)
		return
	}
	outs, err := s.run(batch)
	if err != nil {
		s.metrics.errors.WithLabelValues("model_error").Inc()
		s.cfg.Logger.Error("inference failed", "model", s.cfg.ModelName, "rows", batch.Rows, "error", err)
		writeError(w, http.StatusInternalServerError, "inference failed; see the server log")
		return
	}
	tensors, err := s.responseTensors(batch, outs)
	if err != nil {
		s.refuse(w, err)
		return
	}
	s.metrics.rows.Add(float64(batch.Rows))
	// Before writing the response, which reuses the request's buffer: the values the mirror
	// copies and the outputs it reads are surely intact here.
	s.afterInference(r, batch, outs)
	s.writeInferResponse(w, buf, batch.ID, tensors)
}

// readBatch reads the request body into buf and decodes it.
func (s *Server) readBatch(w http.ResponseWriter, r *http.Request, buf *buffer) (*Batch, error) {
	if err := buf.readAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &RequestError{Status: http.StatusRequestEntityTooLarge,
				Message: fmt.Sprintf("request body is over %d bytes; send fewer rows per request", s.cfg.MaxBodyBytes)}
		}
		return nil, badRequest("read request body: %v", err)
	}
	return s.decode(r, buf.b)
}

// run puts the batch through the model, on its own or with other requests' rows.
func (s *Server) run(batch *Batch) ([]inference.Output, error) {
	if s.batcher != nil {
		return s.batcher.infer(batch.Rows, batch.Data)
	}
	start := time.Now()
	outs, err := s.model.Infer(batch.Rows, batch.Data)
	s.metrics.inference.Observe(time.Since(start).Seconds())
	return outs, err
}

// decode reads a JSON request, or one under the binary tensor extension when the request says
// how long its JSON part is.
func (s *Server) decode(r *http.Request, body []byte) (*Batch, error) {
	header := r.Header.Get(BinaryHeader)
	if header == "" {
		return DecodeInferRequest(body, s.spec)
	}
	n, err := strconv.Atoi(header)
	if err != nil || n < 0 {
		return nil, badRequest("header %s: %q is not a byte count", BinaryHeader, header)
	}
	return DecodeBinaryInferRequest(body, n, s.spec)
}

// refuse answers a request the decoder or the model's output checks turned down.
func (s *Server) refuse(w http.ResponseWriter, err error) {
	var reqErr *RequestError
	if !errors.As(err, &reqErr) {
		reqErr = &RequestError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	reason := "bad_request"
	switch reqErr.Status {
	case http.StatusRequestEntityTooLarge:
		reason = "too_large"
	case http.StatusUnprocessableEntity:
		reason = "non_finite_output"
	}
	s.fail(w, reqErr.Status, reason, reqErr.Message)
}

// responseTensors picks the outputs the request asked for and says how each is sent.
func (s *Server) responseTensors(batch *Batch, outs []inference.Output) ([]responseTensor, error) {
	tensors := make([]responseTensor, 0, len(outs))
	for _, o := range outs {
		if len(batch.Outputs) > 0 && !slices.Contains(batch.Outputs, o.Name) {
			continue
		}
		if i := inference.NonFinite(o.Data); i >= 0 {
			// JSON has no NaN: this would be an empty 200. The input was valid but outside what
			// the model computes sensibly (e.g. values near FP32's limits). Binary outputs could
			// carry it, but a NaN is no answer either way.
			return nil, &RequestError{Status: http.StatusUnprocessableEntity, Message: fmt.Sprintf(
				"the model computed %v for output %q, element %d (row %d); the input is valid FP32 but outside the range this model handles, check its scale",
				o.Data[i], o.Name, i, i/max(1, len(o.Data)/batch.Rows))}
		}
		tensors = append(tensors, responseTensor{Name: o.Name, Shape: o.Shape, Data: o.Data, Binary: batch.binaryOutput(o.Name)})
	}
	return tensors, nil
}

// writeInferResponse sends the response from buf: JSON, or under the binary tensor extension
// the JSON followed by the binary outputs, with the JSON's length in BinaryHeader.
// The body is decoded by now, so its buffer takes the response.
func (s *Server) writeInferResponse(w http.ResponseWriter, buf *buffer, id string, tensors []responseTensor) {
	b := appendInferResponse(buf.b[:0], s.cfg.ModelName, s.cfg.ModelVersion, id, tensors)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if jsonLen := len(b); slices.ContainsFunc(tensors, func(t responseTensor) bool { return t.Binary }) {
		b = appendBinaryOutputs(b, tensors)
		h.Set("Content-Type", "application/octet-stream")
		h.Set(BinaryHeader, strconv.Itoa(jsonLen))
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	buf.b = b // keeps the grown buffer for the next request
}

// takeTurn waits for a free slot, up to QueueTimeout or until the client goes away.
func (s *Server) takeTurn(ctx context.Context) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	s.queued.Add(1)
	defer s.queued.Add(-1)
	t := time.NewTimer(s.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// leave gives the request's slot back; a batch waiting for the requests in flight need not
// wait for this one.
func (s *Server) leave() {
	<-s.slots
	if s.batcher != nil {
		s.batcher.poke()
	}
}

// fail answers a refused inference request and counts it by reason.
func (s *Server) fail(w http.ResponseWriter, status int, reason, msg string) {
	s.metrics.errors.WithLabelValues(reason).Inc()
	s.cfg.Logger.Debug("refused inference request", "status", status, "reason", reason, "error", msg)
	writeError(w, status, msg)
}

// unsupportedEncoding says why a request body is not plain JSON, or "". A body is JSON when it
// says so or says nothing (curl -d sends form encoding's type, so that one is read as JSON too),
// or JSON and then bytes under the binary tensor extension, which may say application/octet-stream;
// compressed bodies are refused rather than read as garbage.
func unsupportedEncoding(r *http.Request) string {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Sprintf("Content-Encoding %q is not supported; send the JSON body uncompressed", ce)
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Sprintf("Content-Type %q is malformed; send application/json", ct)
	}
	if mt == "application/octet-stream" && r.Header.Get(BinaryHeader) != "" {
		return ""
	}
	if mt != "application/json" && mt != "application/x-www-form-urlencoded" && mt != "text/plain" {
		return fmt.Sprintf("Content-Type %q is not supported; send application/json", mt)
	}
	return ""
}

// writeJSON encodes v before sending anything, so a value that cannot be encoded is a 500 with
// a message, never a status with an empty body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		_ = json.NewEncoder(&buf).Encode(map[string]string{"error": "encode the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeError answers with the body every client of this server can rely on: {"error": "..."}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(msg)})
}
