package testenv

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving/oip"
)

// Traffic is a steady stream of Open Inference Protocol requests to one server or Service,
// one row each, recording which model version answered each: what a rollout test watches to
// see how the traffic moved while a deploy ran.
type Traffic struct {
	client      *oip.Client
	model       string
	input       string
	rows        [][]float32
	interval    time.Duration
	maxInFlight int

	stopSending context.CancelFunc
	sending     chan struct{} // closed when the sender has stopped
	inFlight    sync.WaitGroup
	stopOnce    sync.Once

	mu    sync.Mutex
	stats TrafficStats
}

// TrafficStats is what a Traffic saw. Requests are counted in the second they were sent.
type TrafficStats struct {
	Start    time.Time
	Sent     int            // requests sent
	Answered map[string]int // answers by the model version the response names
	Errors   int            // requests that got no answer, or an error status
	// Skipped counts the sends left out because maxTrafficInFlight requests were still out:
	// the servers answer slower than the rate asks for.
	Skipped int
	// ErrorSamples are the first few errors, to say what went wrong.
	ErrorSamples []string
	// Seconds[i] holds the requests sent from Start+i seconds to Start+i+1 seconds.
	Seconds []TrafficSecond
	// Latency is each answer's round trip, by version.
	Latency map[string][]time.Duration
}

// TrafficSecond is one second of a Traffic.
type TrafficSecond struct {
	Answered map[string]int
	Errors   int
}

const (
	maxTrafficInFlight = 256
	trafficTimeout     = 10 * time.Second
	maxErrorSamples    = 10
)

// StartTraffic sends rate infer requests a second for model to baseURL (a Service's
// http://<ClusterIP>:<port>, or any server), cycling through rows, until Stop or the end of
// the test. It first waits up to 30 s for the model's metadata, which names the input. Each
// request opens its own connection: kube-proxy picks a Service's endpoint per connection, so
// this is what spreads the requests over the endpoints as it would spread many clients.
func StartTraffic(t testing.TB, baseURL, model string, rows [][]float32, rate int) *Traffic {
	t.Helper()
	if rate <= 0 || len(rows) == 0 {
		t.Fatalf("traffic to %s: need a positive rate (got %d) and rows (got %d)", baseURL, rate, len(rows))
	}
	client := oip.NewClient(baseURL)
	client.HTTP = &http.Client{Timeout: trafficTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var meta *oip.ModelMetadata
	var err error
	for meta, err = client.Metadata(ctx, model); err != nil; meta, err = client.Metadata(ctx, model) {
		select {
		case <-ctx.Done():
			t.Fatalf("traffic to %s: the metadata of model %s did not come within 30 s: %v", baseURL, model, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(meta.Inputs) == 0 {
		t.Fatalf("traffic to %s: model %s declares no input", baseURL, model)
	}
	sendCtx, stopSending := context.WithCancel(context.Background())
	tr := &Traffic{client: client, model: model, input: meta.Inputs[0].Name, rows: rows,
		interval: time.Second / time.Duration(rate), maxInFlight: maxTrafficInFlight,
		stopSending: stopSending, sending: make(chan struct{}),
		stats: TrafficStats{Start: time.Now(), Answered: map[string]int{}, Latency: map[string][]time.Duration{}}}
	go tr.send(sendCtx)
	t.Cleanup(func() { tr.Stop() })
	return tr
}

// send starts one request per tick; the requests run on their own, so a slow answer does not
// slow the rate down.
func (tr *Traffic) send(ctx context.Context) {
	defer close(tr.sending)
	tick := time.NewTicker(tr.interval)
	defer tick.Stop()
	out := make(chan struct{}, tr.maxInFlight)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case out <- struct{}{}:
		default:
			tr.mu.Lock()
			tr.stats.Skipped++
			tr.mu.Unlock()
			continue
		}
		row := tr.rows[i%len(tr.rows)]
		tr.inFlight.Add(1)
		go func() {
			defer func() { <-out; tr.inFlight.Done() }()
			tr.one(row)
		}()
	}
}

// one sends a row and records the answer. Its context is not the sender's: a request out
// when Stop is called gets to finish, and counts.
func (tr *Traffic) one(row []float32) {
	ctx, cancel := context.WithTimeout(context.Background(), trafficTimeout)
	defer cancel()
	sent := time.Now()
	resp, err := tr.client.Infer(ctx, tr.model, tr.input, [][]float32{row})
	took := time.Since(sent)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := &tr.stats
	sec := int(sent.Sub(s.Start) / time.Second)
	for len(s.Seconds) <= sec {
		s.Seconds = append(s.Seconds, TrafficSecond{Answered: map[string]int{}})
	}
	s.Sent++
	if err != nil {
		s.Errors++
		s.Seconds[sec].Errors++
		if len(s.ErrorSamples) < maxErrorSamples {
			s.ErrorSamples = append(s.ErrorSamples, err.Error())
		}
		return
	}
	s.Answered[resp.ModelVersion]++
	s.Seconds[sec].Answered[resp.ModelVersion]++
	s.Latency[resp.ModelVersion] = append(s.Latency[resp.ModelVersion], took)
}

// Stats is a copy of what the traffic saw so far; it keeps running.
func (tr *Traffic) Stats() TrafficStats {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.stats
	s.Answered = maps.Clone(s.Answered)
	s.ErrorSamples = slices.Clone(s.ErrorSamples)
	s.Seconds = make([]TrafficSecond, len(tr.stats.Seconds))
	for i, sec := range tr.stats.Seconds {
		s.Seconds[i] = TrafficSecond{Answered: maps.Clone(sec.Answered), Errors: sec.Errors}
	}
	s.Latency = make(map[string][]time.Duration, len(tr.stats.Latency))
	for v, l := range tr.stats.Latency {
		s.Latency[v] = slices.Clone(l)
	}
	return s
}

// Stop stops sending, waits for the requests still out and returns the final stats. It may be
// called more than once.
func (tr *Traffic) Stop() TrafficStats {
	tr.stopOnce.Do(func() {
		tr.stopSending()
		<-tr.sending
		tr.inFlight.Wait()
	})
	return tr.Stats()
}

// Window counts the requests sent from the second from falls in up to, not including, the
// second to falls in (seconds counted from Start): answers by version, and errors.
func (s TrafficStats) Window(from, to time.Time) (answered map[string]int, errors int) {
	answered = map[string]int{}
	first, last := s.second(from), s.second(to)
	for i := max(first, 0); i < min(last, len(s.Seconds)); i++ {
		for v, n := range s.Seconds[i].Answered {
			answered[v] += n
		}
		errors += s.Seconds[i].Errors
	}
	return answered, errors
}

// Share is the fraction of the requests of Window(from, to) that version answered (errors
// count as requests), or 0 when none were sent.
func (s TrafficStats) Share(version string, from, to time.Time) float64 {
	answered, errors := s.Window(from, to)
	total := errors
	for _, n := range answered {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(answered[version]) / float64(total)
}

// MaxShare is the largest Share of version over any window of whole seconds lasting window
// (at least one second); the whole run when it is shorter than that.
func (s TrafficStats) MaxShare(version string, window time.Duration) float64 {
	width := max(int(window/time.Second), 1)
	best := 0.0
	for i := 0; i == 0 || i+width <= len(s.Seconds); i++ {
		from := s.Start.Add(time.Duration(i) * time.Second)
		best = max(best, s.Share(version, from, from.Add(time.Duration(width)*time.Second)))
	}
	return best
}

// second is the index in Seconds of the second t falls in.
func (s TrafficStats) second(t time.Time) int {
	d := t.Sub(s.Start)
	if d < 0 {
		return -1
	}
	return int(d / time.Second)
}

// DigitsRows are the validation fixture's samples as rows to send.
func DigitsRows(t testing.TB) [][]float32 {
	t.Helper()
	f, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	if err != nil {
		t.Fatalf("read the validation fixture: %v", err)
	}
	rows := make([][]float32, len(f.Samples))
	for i, s := range f.Samples {
		rows[i] = make([]float32, len(s.Features))
		for j, v := range s.Features {
			rows[i][j] = float32(v)
		}
	}
	return rows
}
