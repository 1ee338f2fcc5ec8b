package serving

import (
	"fmt"
	"sync"
	"time"

	"github.com/modelship/modelship/internal/ml/inference"
)

// batcher runs the rows of concurrent requests through the model together: one model run has a
// fixed cost (gonnx builds its operators and starts goroutines per run) that a one-row request
// pays alone. It has no goroutine of its own, and the model runs one batch at a time: a request
// that finds it idle runs at once, and those that arrive meanwhile queue for the next run, which
// the first of them leads. That run waits, up to maxDelay, until the queue holds every request
// in flight (those being read and decoded, or answering and about to hand their slot to the next
// request) and as many as the last runs suggest are on their way. With one request at a time
// (concurrency 1) nothing ever waits.
type batcher struct {
	model    *inference.Model
	features int
	maxRows  int           // rows in one run at most
	maxDelay time.Duration // how long a run may wait for requests being read
	inFlight func() int    // requests holding a slot of the server's in-flight limit, or waiting for one
	slots    int           // the in-flight limit

	mu      sync.Mutex
	queue   []*call
	running bool          // a leader is collecting or running a batch
	arrived chan struct{} // wakes a waiting leader when a call queues
	timer   *time.Timer   // the leader's wait; only the leader touches it
	observe func(time.Duration)
	// expect is how many requests a run may wait for: as many as the largest run since a wait
	// last ran out, then as many as came in that wait. Runs grow as requests that arrive during
	// a wait join it, up to the in-flight limit; when the load drops, one wait of maxDelay
	// brings them back down.
	expect int
}

// call is one request's part of a batch.
type call struct {
	rows int
	data []float32
	outs []inference.Output
	err  error
	// done gets true when the call's outputs are in, false when the call is to lead the next run.
	done chan bool
}

func newBatcher(model *inference.Model, maxRows, slots int, maxDelay time.Duration, inFlight func() int, observe func(time.Duration)) *batcher {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &batcher{model: model, features: model.Features(), maxRows: maxRows, maxDelay: maxDelay,
		inFlight: inFlight, slots: slots, arrived: make(chan struct{}, 1), timer: t, observe: observe}
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan bool, 1)} }}

// infer runs rows through the model, alone or with other requests' rows.
func (b *batcher) infer(rows int, data []float32) ([]inference.Output, error) {
	c := calls.Get().(*call)
	defer func() {
		*c = call{done: c.done}
		calls.Put(c)
	}()
	c.rows, c.data = rows, data
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	b.poke()
	if !lead && <-c.done {
		return c.outs, c.err
	}
	b.lead(c)
	return c.outs, c.err
}

// poke wakes a leader waiting for more requests: one has joined, or one has left the server.
func (b *batcher) poke() {
	select {
	case b.arrived <- struct{}{}:
	default:
	}
}

// lead collects a batch that holds c, runs it, hands each call its rows, and passes the lead
// on to the first call still queued (or marks the model idle).
func (b *batcher) lead(c *call) {
	full := b.wait()
	b.mu.Lock()
	batch, rows := b.take()
	if b.expect = max(b.expect, len(batch)); !full {
		b.expect = len(batch)
	}
	b.mu.Unlock()
	b.run(batch, rows)
	b.mu.Lock()
	var next *call
	if len(b.queue) > 0 {
		next = b.queue[0]
	} else {
		b.running = false
	}
	b.mu.Unlock()
	for _, other := range batch {
		if other != c {
			other.done <- true
		}
	}
	if next != nil {
		next.done <- false
	}
}

// minWaitRun is the smallest run worth waiting for requests on their way: two requests that
// share runs by themselves (concurrency 2) lose more to the wait for each other than the
// shared run saves, measured with wrk on 2 cores.
const minWaitRun = 3

// wait holds the batch open, up to maxDelay, until it holds every request in flight and as many
// as the last runs suggest are on their way (requests being read are invisible until they
// join, and a busy server has more of them than hold a slot). It reports false when it ran out
// of time. With one request in flight at a time (concurrency 1) it never waits.
func (b *batcher) wait() bool {
	var deadline time.Time
	for {
		b.mu.Lock()
		queued, expect := len(b.queue), b.expect
		b.mu.Unlock()
		if expect < minWaitRun {
			expect = 0
		}
		if queued >= min(b.slots, max(expect, b.inFlight())) {
			return true
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(b.maxDelay)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		b.timer.Reset(left)
		select {
		case <-b.arrived:
			b.timer.Stop()
		case <-b.timer.C:
			return false
		}
	}
}

// take removes the calls of the next batch from the queue: as many as fit in maxRows, and the
// first call always (its rows are within MaxBatch on their own).
func (b *batcher) take() ([]*call, int) {
	rows, n := 0, 0
	for n < len(b.queue) && (n == 0 || rows+b.queue[n].rows <= b.maxRows) {
		rows += b.queue[n].rows
		n++
	}
	batch := make([]*call, n)
	copy(batch, b.queue)
	b.queue = append(b.queue[:0], b.queue[n:]...)
	return batch, rows
}

// run puts the batch's rows through the model in one run. If that run fails, each call is run
// alone, so that one request the model cannot take fails only itself.
func (b *batcher) run(batch []*call, rows int) {
	if len(batch) == 1 {
		c := batch[0]
		c.outs, c.err = b.timed(c.rows, c.data)
		return
	}
	data := make([]float32, 0, rows*b.features)
	for _, c := range batch {
		data = append(data, c.data...)
	}
	outs, err := b.timed(rows, data)
	if err != nil {
		for _, c := range batch {
			c.outs, c.err = b.timed(c.rows, c.data)
		}
		return
	}
	offset := 0
	for _, c := range batch {
		c.outs, c.err = rowsOf(outs, offset, c.rows)
		offset += c.rows
	}
}

func (b *batcher) timed(rows int, data []float32) ([]inference.Output, error) {
	start := time.Now()
	outs, err := b.model.Infer(rows, data)
	b.observe(time.Since(start))
	return outs, err
}

// rowsOf is rows [from, from+n) of each output of a batch.
func rowsOf(outs []inference.Output, from, n int) ([]inference.Output, error) {
	mine := make([]inference.Output, len(outs))
	for i, o := range outs {
		if len(o.Shape) == 0 || o.Shape[0] == 0 || len(o.Data)%o.Shape[0] != 0 {
			return nil, fmt.Errorf("output %q of shape %v cannot be split by row", o.Name, o.Shape)
		}
		width := len(o.Data) / o.Shape[0]
		shape := append([]int{n}, o.Shape[1:]...)
		mine[i] = inference.Output{Name: o.Name, Shape: shape, Data: o.Data[from*width : (from+n)*width]}
	}
	return mine, nil
}
