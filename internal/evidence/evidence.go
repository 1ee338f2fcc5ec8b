// Package evidence records what a pipeline stage ran with and what it produced, so a result can
// be reproduced later (the guide's "save the exact command, runtime or package version, model
// name, and observed output"). Every record is redacted before it is written: no secret value
// ever reaches a file.
package evidence

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/plumbing/atomicfile"
)

// Schema is the evidence.json format version.
const Schema = 1

// FileName is the conventional name of a stage's record.
const FileName = "evidence.json"

// Outcomes of a stage.
const (
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Record is one stage's evidence.
type Record struct {
	SchemaVersion int               `json:"schema_version"`
	Stage         string            `json:"stage"`
	Invocation    []string          `json:"invocation"`
	Versions      Versions          `json:"versions"`
	Model         Model             `json:"model"`
	Config        map[string]string `json:"config"`
	Inputs        map[string]string `json:"inputs"`
	Outputs       map[string]any    `json:"outputs"`
	Timings       []Timing          `json:"timings"`
	StartedAt     time.Time         `json:"started_at"`
	FinishedAt    time.Time         `json:"finished_at"`
	DurationMS    float64           `json:"duration_ms"`
	Outcome       string            `json:"outcome"`
	Error         string            `json:"error,omitempty"`
}

// Versions of what ran.
type Versions struct {
	Modelship    string `json:"modelship"`
	Commit       string `json:"commit"`
	Go           string `json:"go"`
	DaggerEngine string `json:"dagger_engine"`
}

// Model is the model the stage worked on.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// Timing is one timed step.
type Timing struct {
	Step       string  `json:"step"`
	DurationMS float64 `json:"duration_ms"`
}

// New starts a record for stage, invoked with args (os.Args), by the binary of version.
func New(stage, version string, args []string) *Record {
	r := &Record{SchemaVersion: Schema, Stage: stage, Invocation: append([]string(nil), args...),
		Config: map[string]string{}, Inputs: map[string]string{}, Outputs: map[string]any{}, Timings: []Timing{}, StartedAt: time.Now().UTC()}
	r.Versions = Versions{Modelship: version, Go: runtime.Version(), Commit: "unknown", DaggerEngine: "none"}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				r.Versions.Commit = s.Value
			}
		}
	}
	// Set by the Dagger module for the stages it runs.
	if v := os.Getenv("MODELSHIP_DAGGER_ENGINE_VERSION"); v != "" {
		r.Versions.DaggerEngine = v
	}
	if v := os.Getenv("MODELSHIP_COMMIT"); v != "" && r.Versions.Commit == "unknown" {
		r.Versions.Commit = v
	}
	return r
}

// Banner is the line a stage prints before it starts: what it runs with.
func (r *Record) Banner() string {
	keys := make([]string, 0, len(r.Config))
	for k := range r.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cfg []string
	for _, k := range keys {
		cfg = append(cfg, k+"="+r.Config[k])
	}
	return fmt.Sprintf("modelship %s (commit %s, %s, dagger engine %s) stage %s, model %s@%s sha256:%s; config: %s",
		r.Versions.Modelship, r.Versions.Commit, r.Versions.Go, r.Versions.DaggerEngine, r.Stage,
		orDash(r.Model.Name), orDash(r.Model.Version), orDash(r.Model.SHA256), strings.Join(cfg, " "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Time adds a timed step.
func (r *Record) Time(step string, d time.Duration) {
	r.Timings = append(r.Timings, Timing{Step: step, DurationMS: float64(d) / float64(time.Millisecond)})
}

// Finish stamps the end and the outcome (Failed with the error when err is not nil).
func (r *Record) Finish(err error) {
	r.FinishedAt = time.Now().UTC()
	r.DurationMS = float64(r.FinishedAt.Sub(r.StartedAt)) / float64(time.Millisecond)
	r.Outcome = Succeeded
	if err != nil {
		r.Outcome, r.Error = Failed, err.Error()
	}
}

// secretFlag says whether a flag carries a secret value by its name.
func secretFlag(name string) bool {
	name = strings.ToLower(strings.TrimLeft(name, "-"))
	for _, word := range []string{"secret", "password", "token", "webhook", "credential", "access-key", "private-key"} {
		if strings.Contains(name, word) {
			return true
		}
	}
	return false
}

// SecretsFromEnv are the values of the environment variables that hold secrets here.
func SecretsFromEnv() []string {
	var out []string
	for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "MODELSHIP_WEBHOOK_URL", "REGISTRY_PASSWORD"} {
		if v := os.Getenv(k); len(v) >= 4 {
			out = append(out, v)
		}
	}
	return out
}

const redacted = "[redacted]"

// Marshal renders the record with secrets removed: values of secret-named flags in the
// invocation, and every occurrence of a known secret value anywhere in the record.
func (r *Record) Marshal(secrets []string) ([]byte, error) {
	c := *r
	c.Invocation = redactArgs(r.Invocation)
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode evidence: %w", err)
	}
	out := string(raw)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		quoted, _ := json.Marshal(s)
		out = strings.ReplaceAll(out, strings.Trim(string(quoted), `"`), redacted)
	}
	return []byte(out + "\n"), nil
}

func redactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasValue := strings.Cut(a, "=")
		if !secretFlag(name) {
			continue
		}
		if hasValue {
			out[i] = name + "=" + redacted
		} else if i+1 < len(out) {
			out[i+1] = redacted
			i++
		}
	}
	return out
}

// Write puts the redacted record at path.
func (r *Record) Write(path string, secrets []string) error {
	raw, err := r.Marshal(secrets)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, raw)
}
