// Command model-server serves one ONNX model over the Open Inference Protocol (KServe v2).
//
// Every flag has an environment variable of the same meaning (MODELSHIP_...); a flag given on
// the command line wins.
//
// With -public-key and -model-signature (the DSSE envelope `modelship model pull
// --signature-out` writes) it serves the model only if the model file's sha256 is the one that
// key signed: it checks before it loads the model or listens, and exits 1 if the file, the key or
// the signature is not right.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/filedigest"
	"github.com/modelship/modelship/internal/signing/modelsig"
	"github.com/modelship/modelship/serving"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	modelPath, modelName, modelVersion, addr, logLevel string
	backend, ortLibrary                                string
	maxBodyBytes                                       int64
	maxBatch, maxInFlight                              int
	shutdownTimeout, queueTimeout, batchMaxDelay       time.Duration
	showVersion                                        bool
	probeURL                                           string
	shadowURL, shadowModel                             string
	shadowSample                                       float64
	shadowTimeout                                      time.Duration
	publicKey, modelSignature                          string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "model-server: %v\n", err)
		return 2
	}
	if opts.showVersion {
		fmt.Println(version)
		return 0
	}
	if opts.probeURL != "" {
		return probe(opts.probeURL)
	}
	logger, err := newLogger(opts.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "model-server: %v\n", err)
		return 2
	}
	if err := serve(opts, logger); err != nil {
		logger.Error("model server stopped", "error", err.Error())
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("model-server", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.modelPath, "model-path", env("MODELSHIP_MODEL_PATH", "/models/model.onnx"), "ONNX model file to serve (MODELSHIP_MODEL_PATH)")
	fs.StringVar(&o.modelName, "model-name", env("MODELSHIP_MODEL_NAME", "digits"), "name the model is served under in /v2/models/{name} (MODELSHIP_MODEL_NAME)")
	fs.StringVar(&o.modelVersion, "model-version", env("MODELSHIP_MODEL_VERSION", ""), "model version reported in metadata and responses (MODELSHIP_MODEL_VERSION)")
	fs.StringVar(&o.backend, "backend", env("MODELSHIP_BACKEND", string(inference.BackendAuto)), "what runs the model: auto (gonnx when gonnx can, else onnxruntime), gonnx or onnxruntime (MODELSHIP_BACKEND)")
	fs.StringVar(&o.ortLibrary, "ort-library", env("MODELSHIP_ORT_LIBRARY", ""), "libonnxruntime.so for the onnxruntime backend, ONNX Runtime 1.24 or later (MODELSHIP_ORT_LIBRARY)")
	fs.StringVar(&o.addr, "addr", env("MODELSHIP_ADDR", ":8000"), "listen address (MODELSHIP_ADDR)")
	fs.StringVar(&o.logLevel, "log-level", env("MODELSHIP_LOG_LEVEL", "info"), "debug, info, warn or error (MODELSHIP_LOG_LEVEL)")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", envInt("MODELSHIP_MAX_BODY_BYTES", serving.DefaultMaxBodyBytes), "largest inference request body in bytes (MODELSHIP_MAX_BODY_BYTES)")
	fs.IntVar(&o.maxBatch, "max-batch", int(envInt("MODELSHIP_MAX_BATCH", serving.DefaultMaxBatch)), "most rows in one inference request (MODELSHIP_MAX_BATCH)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", int(envInt("MODELSHIP_MAX_IN_FLIGHT", int64(serving.DefaultMaxInFlight()))), "inference requests read and run at once; more wait (MODELSHIP_MAX_IN_FLIGHT)")
	fs.DurationVar(&o.queueTimeout, "queue-timeout", serving.DefaultQueueTimeout, "how long a request waits for its turn before a 503 with Retry-After")
	fs.DurationVar(&o.batchMaxDelay, "batch-max-delay", envDuration("MODELSHIP_BATCH_MAX_DELAY", 0), "run concurrent requests through the model together, a run waiting at most this long for requests still being read; 0 runs each request alone (MODELSHIP_BATCH_MAX_DELAY)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", serving.DefaultShutdownTimeout, "time in-flight requests get to finish after SIGTERM")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.probeURL, "probe", "", "GET this URL, exit 0 on 200 and 1 otherwise (a HEALTHCHECK for images without curl)")
	fs.StringVar(&o.shadowURL, "shadow-url", "", "base URL of a candidate model server (e.g. http://10.0.0.7:8000) to mirror inference requests to, for shadow analysis; the live answers never wait for it (MODELSHIP_SHADOW_URL)")
	fs.Float64Var(&o.shadowSample, "shadow-sample", 1, "fraction of successful inference requests mirrored to -shadow-url, in (0, 1] (MODELSHIP_SHADOW_SAMPLE)")
	fs.StringVar(&o.shadowModel, "shadow-model", "", "model name at -shadow-url; default -model-name (MODELSHIP_SHADOW_MODEL)")
	fs.DurationVar(&o.shadowTimeout, "shadow-timeout", serving.DefaultShadowTimeout, "how long the candidate gets to answer one mirrored request (MODELSHIP_SHADOW_TIMEOUT)")
	fs.StringVar(&o.publicKey, "public-key", env("MODELSHIP_PUBLIC_KEY", ""), "PEM public key (cosign.pub) the model was signed with; with -model-signature, the server serves the model only if its sha256 is the signed one (MODELSHIP_PUBLIC_KEY)")
	fs.StringVar(&o.modelSignature, "model-signature", env("MODELSHIP_MODEL_SIGNATURE", ""), "the model's signature, the DSSE envelope `modelship model pull --signature-out` writes; needs -public-key (MODELSHIP_MODEL_SIGNATURE)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q; every setting is a flag (see -h)", fs.Args())
	}
	if err := shadowEnv(fs); err != nil {
		return nil, err
	}
	if o.shadowURL != "" {
		if err := serving.CheckShadowURL(o.shadowURL); err != nil {
			return nil, fmt.Errorf("-shadow-url: %w", err)
		}
	}
	if err := checkSignatureFlags(o); err != nil {
		return nil, err
	}
	if err := serving.CheckShadowSample(o.shadowSample); err != nil {
		return nil, fmt.Errorf("-shadow-sample: %w", err)
	}
	if o.shadowTimeout <= 0 {
		return nil, fmt.Errorf("-shadow-timeout %s must be positive, e.g. 2s", o.shadowTimeout)
	}
	if !slices.Contains(inference.Backends, inference.Backend(o.backend)) {
		return nil, fmt.Errorf("-backend %q is unknown; use %q", o.backend, inference.Backends)
	}
	if o.maxBodyBytes <= 0 || o.maxBatch <= 0 || o.maxInFlight <= 0 || o.queueTimeout <= 0 {
		return nil, errors.New("-max-body-bytes, -max-batch, -max-in-flight and -queue-timeout must be positive")
	}
	if o.batchMaxDelay < 0 {
		return nil, errors.New("-batch-max-delay must be 0 (no batching) or positive")
	}
	return o, nil
}

// checkSignatureFlags: a model's signature is checked with both a key and a signature, or not
// at all; one alone is a mistake, not a request to serve unchecked.
func checkSignatureFlags(o *options) error {
	switch {
	case o.publicKey != "" && o.modelSignature == "":
		return errors.New("-public-key (MODELSHIP_PUBLIC_KEY) is set but -model-signature is not: set -model-signature or MODELSHIP_MODEL_SIGNATURE " +
			"to the model's signature (the file `modelship model pull --signature-out` writes), or set neither to serve the model unchecked")
	case o.modelSignature != "" && o.publicKey == "":
		return errors.New("-model-signature (MODELSHIP_MODEL_SIGNATURE) is set but -public-key is not: set -public-key or MODELSHIP_PUBLIC_KEY " +
			"to the PEM public key the model was signed with, or set neither to serve the model unchecked")
	}
	return nil
}

// shadowEnv applies the shadow flags' environment variables, for the flags not given on the
// command line, through the flags' own parsing: unlike a number that falls back to its default
// when malformed, a mistyped sample must not quietly mirror every request.
func shadowEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, e := range []struct{ flag, env string }{
		{"shadow-url", "MODELSHIP_SHADOW_URL"}, {"shadow-sample", "MODELSHIP_SHADOW_SAMPLE"},
		{"shadow-model", "MODELSHIP_SHADOW_MODEL"}, {"shadow-timeout", "MODELSHIP_SHADOW_TIMEOUT"},
	} {
		v := os.Getenv(e.env)
		if v == "" || given[e.flag] {
			continue
		}
		if err := fs.Set(e.flag, v); err != nil {
			return fmt.Errorf("%s=%q (the environment's -%s): %w", e.env, v, e.flag, err)
		}
	}
	return nil
}

func probe(url string) int {
	client := &http.Client{Timeout: 2 * time.Second}
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

func env(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}

func envInt(key string, fallback int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(key), 10, 64); err == nil {
		return v
	}
	return fallback
}

func envDuration(key string, fallback time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return fallback
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// tuneGC lets the heap grow to five times what is live (GOGC=400) instead of twice: a one-row
// request allocates about 16 KB, most of it inside gonnx, and with a live heap of a few MiB the
// default collected about a hundred times a second at full load, a fifth of the server's CPU.
// A soft memory limit derived from the request limits keeps the worst case bounded: 32 MiB for
// the process plus, per request in flight, three times the largest body (the body, the general
// decoder's copy of it, the decoded values). GOGC or GOMEMLIMIT in the environment win.
func tuneGC(o *options) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(32<<20 + 3*int64(o.maxInFlight)*o.maxBodyBytes)
	}
}

func serve(o *options, logger *slog.Logger) error {
	tuneGC(o)
	start := time.Now()
	signedSHA256, err := verifyModel(o, logger)
	if err != nil {
		return err
	}
	model, err := inference.LoadWith(o.modelPath, inference.Options{Backend: inference.Backend(o.backend), ORTLibrary: o.ortLibrary})
	if err != nil {
		return fmt.Errorf("load model (set -model-path or MODELSHIP_MODEL_PATH to an ONNX file): %w", err)
	}
	// The file was hashed before it was read to load: the bytes loaded must be the ones checked.
	if signedSHA256 != "" && model.SHA256() != signedSHA256 {
		return fmt.Errorf("%w: model %s changed while the server loaded it: it had the signed sha256 %s when checked, %s when loaded; "+
			"stop whatever writes the file and start the server again", modelsig.ErrBadSignature, o.modelPath, signedSHA256, model.SHA256())
	}
	if o.modelVersion == "" {
		o.modelVersion = model.Property("version")
	}
	logger.Info("model loaded", "path", o.modelPath, "name", o.modelName, "version", o.modelVersion,
		"sha256", model.SHA256(), "features", model.Features(), "backend", model.Backend(), "opset", model.DeclaredOpset(), "onnxruntime", inference.ORTVersion(), "load_time", time.Since(start).String(), "server_version", version)
	srv, err := serving.New(model, serving.Config{
		ModelName: o.modelName, ModelVersion: o.modelVersion, ServerVersion: version,
		MaxBodyBytes: o.maxBodyBytes, MaxBatch: o.maxBatch, ShutdownTimeout: o.shutdownTimeout, Logger: logger,
		MaxInFlight: o.maxInFlight, QueueTimeout: o.queueTimeout, BatchMaxDelay: o.batchMaxDelay,
		ShadowURL: o.shadowURL, ShadowSample: o.shadowSample, ShadowModel: o.shadowModel, ShadowTimeout: o.shadowTimeout,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set -addr or MODELSHIP_ADDR): %w", o.addr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Listen first so liveness answers during warm-up; readiness waits for it.
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	if err := srv.WarmUp(); err != nil {
		stop()
		if serr := <-errc; serr != nil {
			logger.Error("stopping after a failed warm-up", "error", serr.Error())
		}
		return err
	}
	return <-errc
}

// verifyModel checks, when -public-key and -model-signature are set, that the model file is the
// model the key signed, and returns the file's sha256; with neither set it checks nothing and
// returns "".
func verifyModel(o *options, logger *slog.Logger) (string, error) {
	if o.publicKey == "" && o.modelSignature == "" {
		return "", nil
	}
	v, err := modelsig.LoadVerifierFile(o.publicKey)
	if err != nil {
		return "", fmt.Errorf("check the model's signature: %w; set -public-key or MODELSHIP_PUBLIC_KEY to the PEM public key file (cosign.pub) the model was signed with", err)
	}
	envelope, err := os.ReadFile(o.modelSignature)
	if err != nil {
		return "", fmt.Errorf("check the model's signature: read the signature: %w; set -model-signature or MODELSHIP_MODEL_SIGNATURE "+
			"to the model's signature (the file `modelship model pull --signature-out` writes)", err)
	}
	// A file that is not a signature at all is named before the model, which may be large, is read.
	var notEnvelope *modelsig.EnvelopeError
	if _, err := modelsig.EnvelopePayload(envelope); errors.As(err, &notEnvelope) {
		return "", fmt.Errorf("check the model's signature: %s is not a DSSE envelope: %w; set -model-signature or MODELSHIP_MODEL_SIGNATURE "+
			"to the model's signature (the file `modelship model pull --signature-out` writes)", o.modelSignature, notEnvelope.Err)
	}
	sum, _, err := filedigest.SHA256(o.modelPath)
	if err != nil {
		err = fmt.Errorf("read model file: %w", err)
		return "", fmt.Errorf("check the model's signature: %w; set -model-path or MODELSHIP_MODEL_PATH to the signed ONNX file", err)
	}
	signed, err := modelsig.VerifyModelFile(envelope, sum, v)
	if err != nil {
		return "", fmt.Errorf("refuse to serve model %s: signature %s, public key %s: %w; %s",
			o.modelPath, o.modelSignature, o.publicKey, err, signatureHint(err))
	}
	logger.Info(fmt.Sprintf("the model's sha256 matches the signature of %s@%s", signed.Name, signed.Version),
		"path", o.modelPath, "sha256", sum, "signed_name", signed.Name, "signed_version", signed.Version,
		"signature", o.modelSignature, "public_key", o.publicKey)
	return sum, nil
}

// signatureHint says what to do about a model that failed VerifyModelFile with err: if the
// signature holds with the key, it is the file that is wrong; if not, the key or the signature.
func signatureHint(err error) string {
	if errors.Is(err, modelsig.ErrNotSignedModel) {
		return "serve the model file this signature was made for: pull the model and its signature again with " +
			"`modelship model pull --public-key ... --signature-out ...` and point -model-path and -model-signature at what it wrote"
	}
	if errors.Is(err, modelsig.ErrBadSignature) {
		return "set -public-key (MODELSHIP_PUBLIC_KEY) to the public key of the key that signed the model, " +
			"or pull the signature again with `modelship model pull --public-key ... --signature-out ...`"
	}
	return "set -model-signature (MODELSHIP_MODEL_SIGNATURE) to the DSSE envelope `modelship model pull --signature-out` writes"
}
