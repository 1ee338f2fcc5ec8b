// Command hello-oip is the baseline scripts/bench-serve.sh measures the model server against:
// the least an HTTP server can do for an Open Inference Protocol request. It reads the whole
// body and answers every POST with the same canned reply, shaped like the digits model's own
// (one output, "probabilities", FP32 [1, 10]), so the difference to the real server is what
// decoding, inference, encoding and instrumentation cost.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

// reply is a real response of the digits model to scripts/wrk-infer.lua's row.
const reply = `{"model_name":"digits","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,10],` +
	`"data":[4.56573e-13,4.579353e-13,1.986561e-15,2.486624e-7,6.697058e-15,0.99999976,2.9459085e-12,1.3295802e-13,7.775904e-10,8.263792e-10]}]}` + "\n"

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ready":true}`)
	})
	mux.HandleFunc("/", answer)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "hello-oip: %v\n", err)
		os.Exit(1)
	}
}

// answer reads the whole request body into memory, as a server that decodes it must, then
// sends the reply.
func answer(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		log.Printf("read request body: %v", err)
		http.Error(w, "read request body", http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(reply)))
	_, _ = io.WriteString(w, reply)
}
