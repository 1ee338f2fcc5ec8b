package evidence_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/evidence"
)

// RequiredFields are the fields every stage's evidence names (issue: run evidence).
var RequiredFields = []string{"schema_version", "stage", "invocation", "versions", "model", "config", "inputs", "outputs",
	"timings", "started_at", "finished_at", "duration_ms", "outcome"}

func TestARecordNamesEveryFieldAndKeepsNoSecret(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	const hook = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
	r := evidence.New("deploy", "v1.2.3", []string{"modelship", "deploy", "--registry-password", "hunter2hunter2", "--webhook-url=" + hook, "--image", "r/digits:1"})
	r.Model = evidence.Model{Name: "digits", Version: "1", SHA256: "abc"}
	r.Config["storage"] = "http://minio:9000 (AWS_ENDPOINT_URL_S3)"
	r.Inputs["git_sha"] = "0123"
	r.Outputs["note"] = "connected with " + secret
	r.Time("pull", 20*time.Millisecond)
	r.Finish(errors.New("verification failed"))

	path := filepath.Join(t.TempDir(), evidence.FileName)
	require.NoError(t, r.Write(path, []string{secret, hook}))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, leaked := range []string{secret, "hunter2hunter2", hook, "XXXXSECRET"} {
		assert.NotContains(t, string(raw), leaked)
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	for _, f := range RequiredFields {
		assert.Contains(t, m, f)
	}
	assert.Equal(t, "failed", m["outcome"])
	assert.Equal(t, "verification failed", m["error"])
	inv := m["invocation"].([]any)
	assert.Equal(t, "[redacted]", inv[3])
	assert.Equal(t, "--webhook-url=[redacted]", inv[4])
	assert.Equal(t, "r/digits:1", inv[6], "other arguments stay as they were")
	v := m["versions"].(map[string]any)
	assert.Equal(t, "v1.2.3", v["modelship"])
	assert.NotEmpty(t, v["go"])
	assert.Contains(t, r.Banner(), "stage deploy")
	assert.Contains(t, r.Banner(), "digits@1")
}
