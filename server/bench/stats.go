package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// phase collects the operations of one phase while it runs.
type phase struct {
	name string

	total       atomic.Int64 // operations planned, for the progress line
	done        atomic.Int64 // operations finished, with or without error
	rateLimited atomic.Int64 // 429s obeyed and retried

	mu       sync.Mutex // guards lat, errKinds, firstErr
	lat      []time.Duration
	errKinds map[string]int
	firstErr map[string]string // the first full message of each kind

	// Set by the phase's own goroutine only.
	start, end  time.Time
	unsupported string // why the server cannot run this phase, "" if it can
	skipped     string // why the phase did not run, "" if it did
	note        string // what the count is made of, for the table
	cpuMS       float64
	hasCPU      bool
}

func newPhase(name string, total int) *phase {
	p := &phase{name: name, errKinds: map[string]int{}, firstErr: map[string]string{}}
	p.total.Store(int64(total))
	return p
}

// record finishes one operation that took d (without any 429 waits), or
// failed with err. An operation cut short because the run was cancelled is
// not the server's fault and is not counted.
func (p *phase) record(d time.Duration, err error) {
	if err != nil && errors.Is(err, context.Canceled) {
		return
	}
	p.done.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.lat = append(p.lat, d)
		return
	}
	k := errorKind(err)
	if p.errKinds[k] == 0 {
		p.firstErr[k] = err.Error()
	}
	p.errKinds[k]++
}

// errors is how many operations failed so far.
func (p *phase) errors() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.errKinds {
		n += c
	}
	return n
}

// PhaseResult is the outcome of one phase. Latencies are of successful
// operations only; an operation's latency leaves out the time spent
// waiting as a 429 asked.
type PhaseResult struct {
	Name        string
	Count       int            // operations that succeeded
	Errors      int            // operations that failed (4xx, 5xx, timeouts, transport)
	RateLimited int            // 429 answers, each obeyed and retried
	RatePerS    float64        // Count per second of the phase's wall time
	P50MS       float64        // latency percentiles in milliseconds
	P95MS       float64        //
	P99MS       float64        //
	Elapsed     time.Duration  // the phase's wall time
	Unsupported string         // why the server cannot run this phase, "" if it can
	Skipped     string         // why the phase did not run, "" if it did
	Note        string         // what an operation of this phase is
	ErrorKinds  map[string]int // failures by status and errcode
	FirstErrors map[string]string
	ServerCPUMS *float64 // the server's CPU time during the phase, with --pid
}

// Failed reports whether every operation of a phase that ran failed.
func (r *PhaseResult) Failed() bool {
	return r.Count == 0 && r.Errors > 0
}

func (p *phase) result() *PhaseResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &PhaseResult{
		Name: p.name, Count: len(p.lat), RateLimited: int(p.rateLimited.Load()),
		Unsupported: p.unsupported, Skipped: p.skipped, Note: p.note,
		ErrorKinds: map[string]int{}, FirstErrors: map[string]string{},
	}
	for k, n := range p.errKinds {
		r.Errors += n
		r.ErrorKinds[k] = n
		r.FirstErrors[k] = p.firstErr[k]
	}
	if !p.start.IsZero() && p.end.After(p.start) {
		r.Elapsed = p.end.Sub(p.start)
		r.RatePerS = round2(float64(r.Count) / r.Elapsed.Seconds())
	}
	lat := slices.Clone(p.lat)
	slices.Sort(lat)
	r.P50MS, r.P95MS, r.P99MS = percentile(lat, 0.50), percentile(lat, 0.95), percentile(lat, 0.99)
	if p.hasCPU {
		cpu := round2(p.cpuMS)
		r.ServerCPUMS = &cpu
	}
	return r
}

// percentile is the nearest-rank q-quantile of sorted, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return round2(float64(sorted[i]) / float64(time.Millisecond))
}

func round2(x float64) float64 {
	return math.Round(x*100) / 100
}
