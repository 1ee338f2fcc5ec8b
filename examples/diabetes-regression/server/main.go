// Command server is the diabetes example's own model server: one ONNX model served over the
// Open Inference Protocol (KServe v2 REST). It shares no code with modelship on purpose: the
// pipeline has to work with any OIP v2 server a project ships, and this one proves it.
//
// Configuration comes from the environment: MODEL_FILE (default /model/model.onnx), MODEL_NAME
// (required), MODEL_VERSION (default "1") and LISTEN_ADDR (default ":8080").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"gorgonia.org/tensor"
)

// shutdownTimeout stays under Kubernetes' default 30 s grace period, so in-flight requests
// finish before the kubelet resorts to SIGKILL.
const shutdownTimeout = 20 * time.Second

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	probeURL := fs.String("probe", "", "GET this URL, exit 0 on 200 and 1 otherwise (a HEALTHCHECK for images without a shell or curl)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "server: unexpected arguments %q; configure the server with MODEL_FILE, MODEL_NAME, MODEL_VERSION and LISTEN_ADDR\n", fs.Args())
		return 2
	}
	if *probeURL != "" {
		return probe(*probeURL)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := start(logger); err != nil {
		logger.Error("server stopped", "error", err.Error())
		return 1
	}
	return 0
}

// probe is the container's health check: distroless images have no shell or curl to run one.
func probe(url string) int {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", url, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "probe %s: status %d\n", url, resp.StatusCode)
		return 1
	}
	return 0
}

type config struct {
	modelFile, modelName, modelVersion, listenAddr string
}

func configFromEnv() (config, error) {
	cfg := config{
		modelFile:    envOr("MODEL_FILE", "/model/model.onnx"),
		modelName:    os.Getenv("MODEL_NAME"),
		modelVersion: envOr("MODEL_VERSION", "1"),
		listenAddr:   envOr("LISTEN_ADDR", ":8080"),
	}
	if cfg.modelName == "" {
		return config{}, errors.New("MODEL_NAME is not set; it is the name clients use in /v2/models/{name}")
	}
	return cfg, nil
}

// envOr treats an empty variable as unset: the Dockerfile sets MODEL_VERSION from a build arg
// that may be empty.
func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func start(logger *slog.Logger) error {
	cfg, err := configFromEnv()
	if err != nil {
		return err
	}
	m, err := loadModel(cfg.modelFile)
	if err != nil {
		return fmt.Errorf("load model (set MODEL_FILE to an FP32 ONNX model at opset 13): %w", err)
	}
	logger.Info("model loaded", "file", cfg.modelFile, "name", cfg.modelName, "version", cfg.modelVersion,
		"input", m.input.Name, "features", m.features)
	ln, err := net.Listen("tcp", cfg.listenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (set LISTEN_ADDR): %w", cfg.listenAddr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return serve(ctx, ln, newAPI(m, cfg.modelName, cfg.modelVersion), logger)
}

// serve answers on ln until ctx ends, then lets in-flight requests finish.
func serve(ctx context.Context, ln net.Listener, a *api, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Not ready from here on, so a load balancer still polling sends new work elsewhere.
	a.ready.Store(false)
	logger.Info("shutting down", "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	return nil
}

// tensorSpec is how OIP metadata describes a tensor; -1 is a dimension of any size.
type tensorSpec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// outputTensor is one computed output, row-major.
type outputTensor struct {
	name  string
	shape []int
	data  []float32
}

// model is a loaded ONNX graph with one FP32 input of shape [batch, features].
type model struct {
	graph    *gonnx.Model
	input    tensorSpec
	features int
	outputs  []tensorSpec
}

func loadModel(path string) (*model, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model file: %w", err)
	}
	m, err := parseModel(raw)
	if err != nil {
		return nil, fmt.Errorf("model file %s: %w", path, err)
	}
	return m, nil
}

func parseModel(raw []byte) (*model, error) {
	if len(raw) == 0 {
		return nil, errors.New("the file is empty")
	}
	mp, err := gonnx.ModelProtoFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if len(mp.GetGraph().GetNode()) == 0 {
		return nil, errors.New("the ONNX graph has no nodes")
	}
	graph, err := gonnx.NewModel(mp)
	if err != nil {
		return nil, fmt.Errorf("gonnx cannot run this model (it runs ONNX opset 13): %w", err)
	}
	// An unsupported operator would otherwise surface only on the first request.
	for _, n := range mp.GetGraph().GetNode() {
		if _, err := graph.GetOperator(n.GetOpType()); err != nil {
			return nil, fmt.Errorf("node %q: %w", n.GetName(), err)
		}
	}
	m := &model{graph: graph}
	if err := m.describe(mp.GetGraph()); err != nil {
		return nil, err
	}
	// A graph that is well formed but cannot compute must stop the server now, not fail every
	// request once it is reported ready.
	if _, err := m.infer(1, make([]float32, m.features)); err != nil {
		return nil, fmt.Errorf("trial inference on one all-zero row: %w", err)
	}
	return m, nil
}

func (m *model) describe(g *onnx.GraphProto) error {
	// Older exporters list initializers among the inputs; clients never send those.
	params := g.ParamNames()
	var inputs []*onnx.ValueInfoProto
	for _, in := range g.GetInput() {
		if !slices.Contains(params, in.GetName()) {
			inputs = append(inputs, in)
		}
	}
	if len(inputs) != 1 {
		return fmt.Errorf("the model has %d inputs; this server runs models with exactly one", len(inputs))
	}
	in, err := specOf(inputs[0])
	if err != nil {
		return err
	}
	if len(in.Shape) != 2 || in.Shape[1] <= 0 {
		return fmt.Errorf("input %q has shape %v; want [batch, features] with a fixed feature count", in.Name, in.Shape)
	}
	m.input, m.features = in, int(in.Shape[1])
	for _, o := range g.GetOutput() {
		spec, err := specOf(o)
		if err != nil {
			return err
		}
		m.outputs = append(m.outputs, spec)
	}
	if len(m.outputs) == 0 {
		return errors.New("the model declares no outputs")
	}
	return nil
}

func specOf(v *onnx.ValueInfoProto) (tensorSpec, error) {
	tt := v.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() != int32(onnx.TensorProto_FLOAT) {
		return tensorSpec{}, fmt.Errorf("tensor %q is not FP32; this server runs FP32 models only", v.GetName())
	}
	spec := tensorSpec{Name: v.GetName(), Datatype: "FP32", Shape: []int64{}}
	for _, d := range tt.GetShape().GetDim() {
		size := d.GetDimValue()
		if size <= 0 { // a symbolic (dim_param) or unknown dimension
			size = -1
		}
		spec.Shape = append(spec.Shape, size)
	}
	return spec, nil
}

// infer runs rows × features values through the graph. gonnx builds fresh operators on every
// run and only reads the weights, so concurrent calls are safe.
func (m *model) infer(rows int, data []float32) (outs []outputTensor, err error) {
	if rows <= 0 || len(data) != rows*m.features {
		return nil, fmt.Errorf("a batch of %d rows needs %d values, got %d", rows, rows*m.features, len(data))
	}
	// gorgonia panics on some shape errors; one bad request must not take the server down.
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("inference panicked: %v", r)
		}
	}()
	in := tensor.New(tensor.WithShape(rows, m.features), tensor.WithBacking(data))
	res, err := m.graph.Run(gonnx.Tensors{m.input.Name: in})
	if err != nil {
		return nil, fmt.Errorf("run model: %w", err)
	}
	outs = make([]outputTensor, 0, len(m.outputs))
	for _, spec := range m.outputs {
		o, err := collect(spec.Name, res[spec.Name])
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
	}
	return outs, nil
}

func collect(name string, t tensor.Tensor) (outputTensor, error) {
	if t == nil {
		return outputTensor{}, fmt.Errorf("run model: output %q is missing", name)
	}
	var data []float32
	switch v := t.Data().(type) {
	case []float32:
		// A graph can hand back a tensor it did not compute (an initializer, or the request's
		// own input), so the response gets a copy.
		data = slices.Clone(v)
	case float32: // a scalar tensor
		data = []float32{v}
	default:
		return outputTensor{}, fmt.Errorf("run model: output %q holds %T, want float32", name, v)
	}
	return outputTensor{name: name, shape: slices.Clone([]int(t.Shape())), data: data}, nil
}

// nonFinite returns the index of the first NaN or infinity in data, or -1.
func nonFinite(data []float32) int {
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}
