package serving_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rssBoundMiB is the stated bound on the server's peak resident memory (README, reliability)
// while 64 clients send the largest bodies it accepts at once, with the default limits.
const rssBoundMiB = 160

func inferReq(shape, data string) string {
	return fmt.Sprintf(`{"inputs":[{"name":"input","shape":%s,"datatype":"FP32","data":%s}]}`, shape, data)
}

// A valid input the model cannot compute sensibly (every pixel at FP32's limit) makes NaN: that
// is a 422 with a message and a counted error, never an empty 200.
func TestBinaryAnswersANonFiniteOutputWithAnError(t *testing.T) {
	base, _ := startServer(t)
	data := "[" + strings.TrimSuffix(strings.Repeat("3.4e38,", 64), ",") + "]"
	status, body := do(t, http.MethodPost, base+"/v2/models/digits/infer", inferReq("[1,64]", data), nil)
	assert.Equal(t, http.StatusUnprocessableEntity, status)
	assert.Contains(t, string(body), `"error":"the model computed NaN for output`)
	_, metrics := do(t, http.MethodGet, base+"/metrics", "", nil)
	assert.Regexp(t, `modelship_inference_errors_total\{reason="non_finite_output"\} 1\b`, string(metrics))
	assert.Regexp(t, `modelship_inference_rows_total 0\b`, string(metrics), "no rows were served")
}

// A compressed body or another media type is refused up front, not read as garbage JSON.
func TestBinaryRefusesBodiesItCannotRead(t *testing.T) {
	base, _ := startServer(t)
	ok := inferReq("[1,64]", "["+strings.TrimSuffix(strings.Repeat("1,", 64), ",")+"]")
	infer := base + "/v2/models/digits/infer"
	cases := []struct {
		name    string
		headers map[string]string
		status  int
		want    string
	}{
		{"gzip on a plain body", map[string]string{"Content-Encoding": "gzip"}, 415, `Content-Encoding "gzip" is not supported`},
		{"XML", map[string]string{"Content-Type": "application/xml"}, 415, `Content-Type "application/xml" is not supported; send application/json`},
		{"malformed type", map[string]string{"Content-Type": "json;;"}, 415, "is malformed"},
		{"JSON with a charset", map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200, `"model_name":"digits"`},
		{"curl -d's form type", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 200, `"model_name":"digits"`},
		{"identity encoding", map[string]string{"Content-Encoding": "identity"}, 200, `"model_name":"digits"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, http.MethodPost, infer, ok, tc.headers)
			assert.Equal(t, tc.status, status, string(body))
			if status != http.StatusOK {
				var e struct {
					Error string `json:"error"`
				}
				require.NoError(t, json.Unmarshal(body, &e), "error bodies are JSON: %s", body)
				body = []byte(e.Error)
			}
			assert.Contains(t, string(body), tc.want)
		})
	}
	_, metrics := do(t, http.MethodGet, base+"/metrics", "", nil)
	assert.Regexp(t, `modelship_inference_errors_total\{reason="unsupported_media_type"\} 3\b`, string(metrics))
}

// 64 clients at once, each with a worst-case body: 4 MB of values for a [1024, 64] shape (far
// more than it declares), or a valid [1024, 64] batch of long numbers. Every one is answered
// with its status (200, 400, or 503 with Retry-After while the in-flight bound is full), and the
// server's peak resident memory stays under the stated bound.
func TestBinaryHoldsItsMemoryBoundUnderConcurrentWorstCaseBodies(t *testing.T) {
	base, p := startServer(t)
	const limit = 4 << 20
	head := `{"inputs":[{"name":"input","shape":[1024,64],"datatype":"FP32","data":[`
	overflow := head + strings.Repeat("1,", (limit-len(head)-10)/2) + "1]}]}"
	require.LessOrEqual(t, len(overflow), limit)
	long := "0.12345678901234567890123456789012345678901234567890,"
	valid := head + strings.TrimSuffix(strings.Repeat(long, 1024*64), ",") + "]}]}"
	require.LessOrEqual(t, len(valid), limit)

	var wg sync.WaitGroup
	statuses := make([]int, 64)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := overflow
			if i%2 == 1 {
				body = valid
			}
			resp, err := http.Post(base+"/v2/models/digits/infer", "application/json", strings.NewReader(body))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode == http.StatusServiceUnavailable {
				assert.Equal(t, "1", resp.Header.Get("Retry-After"))
			}
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		want := []int{http.StatusBadRequest, http.StatusServiceUnavailable}
		if i%2 == 1 {
			want = []int{http.StatusOK, http.StatusServiceUnavailable}
		}
		assert.Contains(t, want, s, "request %d", i)
	}
	peak := peakRSSMiB(t, p.Cmd.Process.Pid)
	busy := 0
	for _, s := range statuses {
		if s == http.StatusServiceUnavailable {
			busy++
		}
	}
	t.Logf("peak RSS with 64 concurrent worst-case bodies: %d MiB (bound %d MiB); %d of 64 told to retry", peak, rssBoundMiB, busy)
	assert.Less(t, peak, rssBoundMiB)
	status, _ := do(t, http.MethodGet, base+"/v2/health/ready", "", nil)
	assert.Equal(t, http.StatusOK, status, "still serving afterwards")
}

// peakRSSMiB is a process's high-water mark of resident memory (VmHWM).
func peakRSSMiB(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("peak memory needs /proc (Linux): %v", err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(raw)
	require.NotNil(t, m, "VmHWM in /proc/%d/status", pid)
	kb, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return kb / 1024
}
