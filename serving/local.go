package serving

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/modelship/modelship/internal/ml/inference"
)

// Local serves model on a free loopback port, warmed up, until stop is called: the quality
// gate's server for a model file or a registry version (gate.Config.Serve).
func Local(model *inference.Model, name, version string) (url string, stop func(), err error) {
	srv, err := New(model, Config{ModelName: name, ModelVersion: version, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the candidate server: %w", err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		// The server's own error after a requested stop says nothing about the candidate.
		_ = srv.Serve(serveCtx, ln)
		close(done)
	}()
	stop = func() { stopServe(); <-done }
	if err := srv.WarmUp(); err != nil {
		stop()
		return "", nil, err
	}
	return "http://" + ln.Addr().String(), stop, nil
}
