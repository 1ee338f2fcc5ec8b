// Package oip is the Open Inference Protocol (KServe v2 REST) as modelship speaks it: the wire
// types and a client. Deploy checks, the quality gate and the CLI import it without the server,
// so a change to the server does not change what they are built from.
package oip

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/ml/inference"
)

// Client speaks the Open Inference Protocol to one server; the quality gate and the deploy
// smoke test use it.
type Client struct {
	BaseURL string
	HTTP    *http.Client
	// ReadyPath is the readiness endpoint: the protocol's unless a server declares another.
	ReadyPath string
}

// ReadyPath is the protocol's readiness endpoint.
const ReadyPath = "/v2/health/ready"

// NewClient returns a client for baseURL (e.g. http://127.0.0.1:8000).
func NewClient(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}, ReadyPath: ReadyPath}
}

// WithReadyPath is the client with another readiness endpoint; empty keeps the protocol's.
func (c *Client) WithReadyPath(path string) *Client {
	if path != "" {
		c.ReadyPath = path
	}
	return c
}

// Ready reports whether the readiness endpoint answers 200.
func (c *Client) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+c.ReadyPath, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("model server %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("model server %s is not ready: status %d", c.BaseURL, resp.StatusCode)
	}
	return nil
}

// WaitReady polls Ready until it passes or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s%s: %w (last: %v)", c.BaseURL, c.ReadyPath, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Metadata fetches GET /v2/models/{name}.
func (c *Client) Metadata(ctx context.Context, model string) (*ModelMetadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/v2/models/"+model, nil)
	if err != nil {
		return nil, err
	}
	var meta ModelMetadata
	if err := c.do(req, &meta); err != nil {
		return nil, err
	}
	return &meta, nil
}

// Infer sends rows (each of the model's feature width) as one FP32 batch and returns the
// response. input is the model's input tensor name.
func (c *Client) Infer(ctx context.Context, model, input string, rows [][]float32) (*InferResponse, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("infer on %s: no rows", model)
	}
	flat := make([]float32, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		flat = append(flat, r...)
	}
	data, err := json.Marshal(flat)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(InferRequest{Inputs: []RequestInput{{
		Name: input, Shape: []int64{int64(len(rows)), int64(len(rows[0]))}, Datatype: "FP32", Data: data}}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var resp InferResponse
	if err := c.do(req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("%s %s: status %d: %s", req.Method, req.URL, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: response is not valid JSON: %w", req.Method, req.URL, err)
	}
	return nil
}

// InferRequest is an Open Inference Protocol (KServe v2) inference request.
type InferRequest struct {
	ID         string          `json:"id,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Inputs     []RequestInput  `json:"inputs"`
	Outputs    []RequestOutput `json:"outputs,omitempty"`
}

// RequestInput is one input tensor. Data is row-major, flat or nested one level per dimension.
type RequestInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// RequestOutput asks for one output by name.
type RequestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferResponse is the Open Inference Protocol response.
type InferResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version,omitempty"`
	ID           string           `json:"id,omitempty"`
	Outputs      []ResponseOutput `json:"outputs"`
}

// ResponseOutput is one output tensor, row-major and flat.
type ResponseOutput struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
}

// ModelMetadata is the body of GET /v2/models/{name}.
type ModelMetadata struct {
	Name     string                 `json:"name"`
	Versions []string               `json:"versions,omitempty"`
	Platform string                 `json:"platform"`
	Inputs   []inference.TensorSpec `json:"inputs"`
	Outputs  []inference.TensorSpec `json:"outputs"`
	Params   map[string]string      `json:"parameters,omitempty"`
}
