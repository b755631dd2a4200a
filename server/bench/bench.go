// Package bench is `hearth bench`: it drives a running Matrix homeserver,
// Hearth or any other, through the Client-Server API only, measures each
// phase of a small family's worth of traffic and prints one table. It is a
// plain HTTP client and imports nothing of Hearth, so that it measures
// every homeserver the same way.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run's target and sizes. Zero sizes take the defaults.
type Config struct {
	URL          string // the homeserver's base URL, e.g. http://127.0.0.1:8008
	Users        int    // accounts registered
	Rooms        int    // rooms created; room 0 is the one everybody shares
	Messages     int    // messages per send phase
	Concurrency  int    // clients sending at once, and registering at once
	PID          int    // the server's process, sampled from /proc; 0 for none
	JSON         bool   // print one JSON object instead of the table
	SharedSecret string // register through Synapse's /_synapse/admin/v1/register; "" for open registration

	// The sync and pagination phases' sizes; 0 derives them from Messages.
	Deliveries       int           // long-poll deliveries timed: Messages/10, at most 100
	InitialSyncs     int           // initial /syncs: Messages/50, at most 20
	IncrementalSyncs int           // incremental /syncs with nothing new: Messages/10, at most 100
	PageSize         int           // events per /messages page: 50
	Timeout          time.Duration // per request, beyond any long-poll wait: 30 s
}

// The default sizes: a run against Hearth on a small machine takes well
// under a minute.
const (
	DefaultUsers       = 20
	DefaultRooms       = 10
	DefaultMessages    = 1000
	DefaultConcurrency = 10
)

// The phases, in the order they run; their names are the keys of the JSON
// output, which scripts rely on.
const (
	PhaseRegister             = "register"
	PhaseCreateRooms          = "create_rooms"
	PhaseSendSequential       = "send_sequential"
	PhaseSendConcurrentRooms  = "send_concurrent_rooms"
	PhaseSendConcurrentShared = "send_concurrent_shared"
	PhaseSyncDelivery         = "sync_delivery"
	PhaseSyncInitial          = "sync_initial"
	PhaseSyncIncremental      = "sync_incremental"
	PhaseMessagesBackfill     = "messages_backfill"
)

// Phases lists the phase names in the order they run.
var Phases = []string{
	PhaseRegister, PhaseCreateRooms, PhaseSendSequential, PhaseSendConcurrentRooms,
	PhaseSendConcurrentShared, PhaseSyncDelivery, PhaseSyncInitial, PhaseSyncIncremental,
	PhaseMessagesBackfill,
}

// ErrPhaseFailed is returned, wrapped, when every operation of some phase
// failed; the report is printed all the same.
var ErrPhaseFailed = errors.New("a phase failed entirely")

// Report is the outcome of a run.
type Report struct {
	Config Config
	RunID  string         // the part of this run's user names that makes them unique
	Phases []*PhaseResult // in the order of Phases
	Server *ServerResult  // nil without a PID
}

// Phase returns the result of the named phase, or nil.
func (r *Report) Phase(name string) *PhaseResult {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (c Config) withDefaults() (Config, error) {
	c.URL = strings.TrimRight(c.URL, "/")
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return c, fmt.Errorf("--url must be an http:// or https:// URL, not %q", c.URL)
	}
	type size struct {
		v    *int
		def  func() int
		name string
	}
	// In order: the derived sizes' defaults read Messages once it has its own.
	for _, f := range []size{
		{&c.Users, func() int { return DefaultUsers }, "users"},
		{&c.Rooms, func() int { return DefaultRooms }, "rooms"},
		{&c.Messages, func() int { return DefaultMessages }, "messages"},
		{&c.Concurrency, func() int { return DefaultConcurrency }, "concurrency"},
		{&c.Deliveries, func() int { return min(100, max(1, c.Messages/10)) }, "deliveries"},
		{&c.InitialSyncs, func() int { return min(20, max(1, c.Messages/50)) }, "initial syncs"},
		{&c.IncrementalSyncs, func() int { return min(100, max(1, c.Messages/10)) }, "incremental syncs"},
		{&c.PageSize, func() int { return 50 }, "page size"},
	} {
		if *f.v < 0 {
			return c, fmt.Errorf("--%s must not be negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def()
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	return c, nil
}

// run is the state of one run, shared by its phases.
type run struct {
	cfg  Config
	id   string
	http *http.Client
	proc *proc // nil without a PID

	users []*client // accounts that registered, in order
	rooms []room    // rooms that were created, in order

	room0Messages atomic.Int64 // messages sent to rooms[0], the history paged back through

	current atomic.Pointer[phase] // for the progress line
	phases  []*phase
}

// room is a created room and the index in users of its creator.
type room struct {
	id      string
	creator int
}

// Run benchmarks the server at cfg.URL, writes a progress line to stderr
// (nil for none) while it runs and the table, or JSON, to stdout. It
// returns the report, and an error wrapping ErrPhaseFailed if a phase
// failed entirely, or the context's error if ctx ended first (the partial
// report is printed then too).
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, id: runID()}
	r.http = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: cfg.Concurrency + 4, // one keep-alive connection per concurrent client
		IdleConnTimeout:     90 * time.Second,
	}}
	defer r.http.CloseIdleConnections()

	// One request first, so that a wrong URL is one clear error rather
	// than a table of them.
	if _, err := r.newClient().do(ctx, nil, call{method: "GET", path: "/_matrix/client/versions"}); err != nil {
		return nil, fmt.Errorf("%s is not a Matrix homeserver that answers: GET /_matrix/client/versions: %w", cfg.URL, err)
	}

	var srv *ServerResult
	var idleKB int64
	var cpu0 time.Duration
	if cfg.PID != 0 {
		if r.proc, err = newProc(cfg.PID); err != nil {
			return nil, err
		}
		idleKB = r.proc.sample()
		cpu0, _ = r.proc.cpu()
		stop, done := make(chan struct{}), make(chan struct{})
		go r.proc.watch(stop, done)
		defer func() { close(stop); <-done }()
	}

	stopProgress := r.startProgress(stderr)
	r.phase(ctx, PhaseRegister, cfg.Users, r.register)
	r.phase(ctx, PhaseCreateRooms, cfg.Rooms, r.createRooms)
	r.phase(ctx, PhaseSendSequential, cfg.Messages, r.sendSequential)
	r.phase(ctx, PhaseSendConcurrentRooms, cfg.Messages, r.sendConcurrentRooms)
	r.phase(ctx, PhaseSendConcurrentShared, cfg.Messages, r.sendConcurrentShared)
	r.phase(ctx, PhaseSyncDelivery, cfg.Deliveries, r.syncDelivery)
	r.phase(ctx, PhaseSyncInitial, cfg.InitialSyncs, r.syncInitial)
	r.phase(ctx, PhaseSyncIncremental, cfg.IncrementalSyncs, r.syncIncremental)
	r.phase(ctx, PhaseMessagesBackfill, r.backfillPages(), r.messagesBackfill)
	stopProgress()

	rep := &Report{Config: cfg, RunID: r.id}
	for _, p := range r.phases {
		rep.Phases = append(rep.Phases, p.result())
	}
	if r.proc != nil {
		finalKB := r.proc.sample()
		cpu1, _ := r.proc.cpu()
		srv = &ServerResult{
			PID: cfg.PID, IdleRSSMB: mb(idleKB), PeakRSSMB: mb(max(r.proc.peak(), idleKB, finalKB)),
			FinalRSSMB: mb(finalKB), CPUMSTotal: round2(float64(cpu1-cpu0) / float64(time.Millisecond)),
		}
		var cpuMS float64
		for _, name := range []string{PhaseSendSequential, PhaseSendConcurrentRooms, PhaseSendConcurrentShared} {
			if p := rep.Phase(name); p.ServerCPUMS != nil {
				cpuMS += *p.ServerCPUMS
				srv.EventsMeasured += p.Count
			}
		}
		if srv.EventsMeasured > 0 {
			srv.CPUMSPerEvent = round2(cpuMS / float64(srv.EventsMeasured))
		}
		rep.Server = srv
	}

	if cfg.JSON {
		err = writeJSON(stdout, rep)
	} else {
		err = writeTable(stdout, rep)
	}
	if err != nil {
		return rep, err
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	var failed []string
	for _, p := range rep.Phases {
		if p.Failed() {
			failed = append(failed, p.Name)
		}
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("%w: %s", ErrPhaseFailed, strings.Join(failed, ", "))
	}
	return rep, nil
}

// phase runs fn as the named phase, timing it and, with a PID, the
// server's CPU time meanwhile. A phase after a cancelled context, or
// without the accounts and rooms it needs, is skipped.
func (r *run) phase(ctx context.Context, name string, total int, fn func(context.Context, *phase)) {
	p := newPhase(name, total)
	r.phases = append(r.phases, p)
	switch {
	case ctx.Err() != nil:
		p.skipped = "the run was interrupted"
		return
	case name != PhaseRegister && len(r.users) == 0:
		p.skipped = "no account could be registered"
		return
	case name != PhaseRegister && name != PhaseCreateRooms && len(r.rooms) == 0:
		p.skipped = "no room could be created"
		return
	}
	r.current.Store(p)
	var cpu0 time.Duration
	if r.proc != nil {
		cpu0, _ = r.proc.cpu()
	}
	p.start = time.Now()
	fn(ctx, p)
	p.end = time.Now()
	if r.proc != nil {
		if cpu1, err := r.proc.cpu(); err == nil {
			p.cpuMS, p.hasCPU = float64(cpu1-cpu0)/float64(time.Millisecond), true
		}
	}
}

// parallel calls op(i) for every i in [0, n) from at most workers
// goroutines at once, and returns when all have returned or ctx ended.
func parallel(ctx context.Context, n, workers int, op func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				op(i)
			}
		})
	}
	wg.Wait()
}

// startProgress prints the current phase's progress on w, rewriting one
// line, until the returned function is called.
func (r *run) startProgress(w io.Writer) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	// This goroutine only redraws the line; closing quit stops it.
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		width := 0
		for {
			select {
			case <-quit:
				fmt.Fprintf(w, "\r%s\r", strings.Repeat(" ", width))
				return
			case <-t.C:
			}
			p := r.current.Load()
			if p == nil {
				continue
			}
			line := fmt.Sprintf("hearth bench: %-22s %d/%d", p.name, p.done.Load(), p.total.Load())
			if e := p.errors(); e > 0 {
				line += fmt.Sprintf("  errors %d", e)
			}
			if n := p.rateLimited.Load(); n > 0 {
				line += fmt.Sprintf("  429s %d", n)
			}
			pad := max(0, width-len(line))
			width = max(width, len(line))
			fmt.Fprintf(w, "\r%s%s", line, strings.Repeat(" ", pad))
		}
	}()
	return func() { close(quit); <-done }
}

// runID names a run: user names carry it, so that runs never collide on a
// server that keeps its accounts.
func runID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x%s", time.Now().Unix()%1_000_000, hex.EncodeToString(b))
}
