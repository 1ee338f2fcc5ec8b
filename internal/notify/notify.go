// Package notify tells a chat channel what the pipeline did. A failed notification is logged
// and never fails the deploy or rollback it reports on.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Kind is what happened.
type Kind string

// The events worth a message.
const (
	Deployed           Kind = "deployed"
	RolledBack         Kind = "rolled_back"
	VerificationFailed Kind = "verification_failed"
	Halted             Kind = "halted"
	// A canary or shadow rollout: started, one step analysed, promoted, aborted or refused.
	RolloutStarted  Kind = "rollout_started"
	RolloutStep     Kind = "rollout_step"
	RolloutPromoted Kind = "rollout_promoted"
	RolloutAborted  Kind = "rollout_aborted"
)

// Event is one notification.
type Event struct {
	Kind        Kind   `json:"kind"`
	Environment string `json:"environment"`
	Image       string `json:"image,omitempty"`
	GitSHA      string `json:"git_sha,omitempty"`
	Model       string `json:"model,omitempty"`
	Message     string `json:"message"`
}

// Notifier sends events somewhere.
type Notifier interface {
	Notify(ctx context.Context, e Event)
}

// Nop drops every event (no webhook configured).
type Nop struct{}

// Notify does nothing.
func (Nop) Notify(context.Context, Event) {}

// Webhook posts events as JSON that Slack ("text") and Discord ("content") incoming webhooks
// both accept. The URL is a secret: it is never logged.
type Webhook struct {
	url    string
	client *http.Client
	logger *slog.Logger
}

// NewWebhook checks the URL and returns a notifier; an empty URL gives Nop.
func NewWebhook(rawURL string, logger *slog.Logger) (Notifier, error) {
	if rawURL == "" {
		return Nop{}, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// The URL itself stays out of the error: it carries the webhook's token.
		return nil, fmt.Errorf("the webhook URL (MODELSHIP_WEBHOOK_URL) is not an http(s) URL")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Webhook{url: rawURL, client: &http.Client{Timeout: 10 * time.Second}, logger: logger}, nil
}

type payload struct {
	Text    string `json:"text"`
	Content string `json:"content"`
	Event   Event  `json:"modelship"`
}

// Notify posts the event; failures are logged (without the URL) and swallowed.
func (w *Webhook) Notify(ctx context.Context, e Event) {
	text := fmt.Sprintf("[modelship] %s %s: %s", e.Environment, e.Kind, e.Message)
	body, _ := json.Marshal(payload{Text: text, Content: text, Event: e})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		w.logger.Warn("webhook notification not sent", "kind", e.Kind, "error", "bad request")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		// url.Error repeats the URL; report only the cause.
		cause := err
		if ue, ok := err.(*url.Error); ok {
			cause = ue.Err
		}
		w.logger.Warn("webhook notification failed", "kind", e.Kind, "error", cause.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		w.logger.Warn("webhook notification refused", "kind", e.Kind, "status", resp.StatusCode)
	}
}
