package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"hearth/server/bench"
	"hearth/server/servertest"
)

// small is a run that takes about a second against Hearth on loopback.
// Its joins: account 0 into rooms 1 and 2 (it is in every room), accounts
// 1 and 2 into room 0 (the shared room); every other client's room is
// its creator's.
var small = bench.Config{
	Users: 4, Rooms: 3, Messages: 30, Concurrency: 3,
	Deliveries: 5, InitialSyncs: 2, IncrementalSyncs: 5, PageSize: 10,
}

const smallJoins = 4

// room0Messages is how many messages small sends to room 0, the one paged
// back through: all sequential and shared sends, client 0's share of the
// concurrent-rooms sends (every third), and the deliveries if /sync works.
func room0Messages(syncWorks bool) int {
	n := small.Messages + small.Messages + (small.Messages+small.Concurrency-1)/small.Concurrency
	if syncWorks {
		n += small.Deliveries
	}
	return n
}

// syncWorks reports whether s serves /sync at all: Hearth does not yet,
// and the sync phases must then say "unsupported"; once it does, they
// must report real numbers.
func syncWorks(t *testing.T, s *servertest.Server) bool {
	t.Helper()
	c := s.Register(t, servertest.UniqueName("probe"), "pw")
	r := c.Do("GET", "/_matrix/client/v3/sync?timeout=0", nil)
	return r.Status != http.StatusNotFound
}

// wantCounts is the count each phase of small must report.
func wantCounts(syncWorks bool) map[string]int {
	sync := func(n int) int {
		if syncWorks {
			return n
		}
		return 0
	}
	return map[string]int{
		bench.PhaseRegister:             small.Users,
		bench.PhaseCreateRooms:          small.Rooms + smallJoins,
		bench.PhaseSendSequential:       small.Messages,
		bench.PhaseSendConcurrentRooms:  small.Messages,
		bench.PhaseSendConcurrentShared: small.Messages,
		bench.PhaseSyncDelivery:         sync(small.Deliveries),
		bench.PhaseSyncInitial:          sync(small.InitialSyncs),
		bench.PhaseSyncIncremental:      sync(small.IncrementalSyncs),
		bench.PhaseMessagesBackfill:     (room0Messages(syncWorks) + small.PageSize - 1) / small.PageSize,
	}
}

var syncPhases = map[string]bool{bench.PhaseSyncDelivery: true, bench.PhaseSyncInitial: true, bench.PhaseSyncIncremental: true}

func runBench(t *testing.T, cfg bench.Config) (*bench.Report, string, error) {
	t.Helper()
	var out, progress bytes.Buffer
	rep, err := bench.Run(context.Background(), cfg, &out, &progress)
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	return rep, out.String(), err
}

// TestAgainstHearth runs every phase against a real Hearth: each phase
// counts what was asked, without an error, and the sync phases are either
// unsupported because /sync is 404 or measured for real.
func TestAgainstHearth(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	cfg := small
	cfg.URL = s.URL
	rep, table, err := runBench(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, table)
	}
	works := syncWorks(t, s)
	want := wantCounts(works)
	if len(rep.Phases) != len(bench.Phases) {
		t.Fatalf("%d phases reported, want %d", len(rep.Phases), len(bench.Phases))
	}
	for i, name := range bench.Phases {
		p := rep.Phases[i]
		t.Run(name, func(t *testing.T) {
			if p.Name != name {
				t.Fatalf("phase %d is %s, want %s", i, p.Name, name)
			}
			if p.Errors != 0 || p.RateLimited != 0 || p.Skipped != "" {
				t.Errorf("errors %d (%v), 429s %d, skipped %q", p.Errors, p.FirstErrors, p.RateLimited, p.Skipped)
			}
			if p.Count != want[name] {
				t.Errorf("count %d, want %d", p.Count, want[name])
			}
			if syncPhases[name] && !works {
				if p.Unsupported == "" || !strings.Contains(p.Unsupported, "404 M_UNRECOGNIZED") {
					t.Errorf("/sync is 404 but the phase says unsupported=%q", p.Unsupported)
				}
				if !strings.Contains(table, name+" ") || !strings.Contains(table, "unsupported: the server has no /sync") {
					t.Errorf("the table does not say %s is unsupported:\n%s", name, table)
				}
				return
			}
			if p.Unsupported != "" {
				t.Errorf("/sync answers, but the phase says unsupported: %s", p.Unsupported)
			}
			if p.RatePerS <= 0 || p.P50MS > p.P95MS || p.P95MS > p.P99MS || p.P99MS <= 0 {
				t.Errorf("implausible: rate %v/s, p50 %v, p95 %v, p99 %v", p.RatePerS, p.P50MS, p.P95MS, p.P99MS)
			}
			if !strings.Contains(table, "\n"+name+" ") {
				t.Errorf("no row for %s in the table:\n%s", name, table)
			}
		})
	}
	if rep.Server != nil {
		t.Errorf("a server section without --pid: %+v", rep.Server)
	}
	for _, r := range []string{"PHASE", "COUNT", "P99 MS"} {
		if !strings.Contains(table, r) {
			t.Errorf("the table has no %s column:\n%s", r, table)
		}
	}
}

// TestJSON checks the object scripts rely on: a key per phase, each with
// the six promised numbers, counts as asked, no server key without a PID.
func TestJSON(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	cfg := small
	cfg.URL, cfg.JSON = s.URL, true
	_, out, err := runBench(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not one JSON object of objects: %v\n%s", err, out)
	}
	if _, ok := got["server"]; ok {
		t.Error("a server key without --pid")
	}
	works := syncWorks(t, s)
	want := wantCounts(works)
	for _, name := range bench.Phases {
		p, ok := got[name]
		if !ok {
			t.Errorf("no key %q in\n%s", name, out)
			continue
		}
		num := map[string]float64{}
		for _, k := range []string{"count", "errors", "rate_per_s", "p50_ms", "p95_ms", "p99_ms", "rate_limited"} {
			v, ok := p[k].(float64)
			if !ok {
				t.Errorf("%s.%s = %v, want a number", name, k, p[k])
			}
			num[k] = v
		}
		if num["count"] != float64(want[name]) || num["errors"] != 0 || num["rate_limited"] != 0 {
			t.Errorf("%s: count %v errors %v rate_limited %v, want count %d and none", name, num["count"], num["errors"], num["rate_limited"], want[name])
		}
		if syncPhases[name] && !works {
			if p["unsupported"] != true {
				t.Errorf("%s: /sync is 404 but unsupported = %v", name, p["unsupported"])
			}
			continue
		}
		if _, ok := p["unsupported"]; ok {
			t.Errorf("%s: unsupported = %v on a phase that ran", name, p["unsupported"])
		}
		if num["rate_per_s"] <= 0 || num["p50_ms"] > num["p95_ms"] || num["p95_ms"] > num["p99_ms"] || num["p99_ms"] <= 0 || num["p99_ms"] > 10_000 {
			t.Errorf("%s: implausible numbers %v", name, num)
		}
	}
}

// TestPID samples this test's own process, which serves the test server:
// memory and CPU time are read from /proc and reported.
func TestPID(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	s := servertest.Start(t, servertest.Options{})
	for _, asJSON := range []bool{false, true} {
		cfg := small
		cfg.URL, cfg.PID, cfg.JSON = s.URL, os.Getpid(), asJSON
		rep, out, err := runBench(t, cfg)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		srv := rep.Server
		if srv == nil {
			t.Fatal("no server section with a PID")
		}
		if srv.IdleRSSMB <= 1 || srv.PeakRSSMB < srv.IdleRSSMB || srv.FinalRSSMB <= 1 || srv.PeakRSSMB > 10_000 {
			t.Errorf("implausible RSS: %+v", srv)
		}
		if srv.EventsMeasured != 3*small.Messages || srv.CPUMSPerEvent <= 0 || srv.CPUMSPerEvent > 1000 || srv.CPUMSTotal <= 0 {
			t.Errorf("implausible CPU: %+v", srv)
		}
		if asJSON {
			var got map[string]map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"idle_rss_mb", "peak_rss_mb", "cpu_ms_per_event"} {
				if v, ok := got["server"][k].(float64); !ok || v <= 0 {
					t.Errorf("server.%s = %v, want a positive number", k, got["server"][k])
				}
			}
		} else if !strings.Contains(out, "CPU ms per sent event") || !strings.Contains(out, "SRV CPU") {
			t.Errorf("the table does not show the server's figures:\n%s", out)
		}
	}

	cfg := small
	cfg.URL, cfg.PID = s.URL, 1<<30
	if _, err := bench.Run(context.Background(), cfg, &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), "--pid") {
		t.Errorf("a PID that does not exist: err = %v", err)
	}
}

// TestRateLimitedProxy puts a proxy in front of a real Hearth that answers
// chosen requests 429 once, in both forms a server may use: the run
// waits, retries, counts each 429 on its phase and loses nothing.
func TestRateLimitedProxy(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	target, _ := url.Parse(s.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex // guards limits
	limits := map[string]int{"/register": 2, "/createRoom": 1, "/messages": 1}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		var limited string
		for suffix, n := range limits {
			if strings.HasSuffix(r.URL.Path, suffix) && n > 0 {
				limits[suffix]--
				limited = suffix
			}
		}
		mu.Unlock()
		switch limited {
		case "":
			proxy.ServeHTTP(w, r)
		case "/createRoom": // the header only, as a proxy in front may send
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":20}`))
		}
	}))
	defer front.Close()

	cfg := small
	cfg.URL = front.URL
	rep, out, err := runBench(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	want429 := map[string]int{bench.PhaseRegister: 2, bench.PhaseCreateRooms: 1, bench.PhaseMessagesBackfill: 1}
	counts := wantCounts(syncWorks(t, s))
	for _, p := range rep.Phases {
		if p.RateLimited != want429[p.Name] || p.Errors != 0 || p.Count != counts[p.Name] {
			t.Errorf("%s: 429s %d errors %d count %d, want 429s %d, no errors, count %d",
				p.Name, p.RateLimited, p.Errors, p.Count, want429[p.Name], counts[p.Name])
		}
	}
}

// TestRateLimitedHearth runs against Hearth with its rate limits on:
// registration's per-address limit (a burst of 5) trips on the sixth
// request, the run obeys the Retry-After and still completes.
func TestRateLimitedHearth(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about six seconds for Hearth's registration limiter")
	}
	s := servertest.Start(t, servertest.Options{RateLimit: true})
	cfg := bench.Config{URL: s.URL, Users: 3, Rooms: 1, Messages: 5, Concurrency: 1,
		Deliveries: 1, InitialSyncs: 1, IncrementalSyncs: 1}
	rep, out, err := runBench(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	reg := rep.Phase(bench.PhaseRegister)
	if reg.RateLimited == 0 || reg.Count != 3 || reg.Errors != 0 {
		t.Errorf("register: %d 429s, count %d, errors %d; want 429s counted and 3 accounts", reg.RateLimited, reg.Count, reg.Errors)
	}
	// The wait is not the server's speed: no registration took seconds.
	if reg.P99MS > 3000 {
		t.Errorf("register p99 %v ms includes the rate limiter's wait", reg.P99MS)
	}
	if !strings.Contains(out, "429S") {
		t.Errorf("the table has no 429 column:\n%s", out)
	}
}

// TestSharedSecret registers through Synapse's shared-secret admin API on
// a server whose registration is closed.
func TestSharedSecret(t *testing.T) {
	s := servertest.Start(t, servertest.Options{ClosedRegistration: true, SharedSecret: "s3cret"})
	cfg := small
	cfg.URL, cfg.SharedSecret = s.URL, "s3cret"
	rep, out, err := runBench(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if p := rep.Phase(bench.PhaseRegister); p.Count != small.Users || p.Errors != 0 {
		t.Errorf("register: count %d errors %d", p.Count, p.Errors)
	}
	if p := rep.Phase(bench.PhaseSendSequential); p.Count != small.Messages {
		t.Errorf("send_sequential after shared-secret accounts: count %d", p.Count)
	}
}

// TestFailedPhase: a server that refuses every registration fails the
// first phase entirely; the errors are shown, the later phases say why
// they did not run, and Run reports the failure for the exit code.
func TestFailedPhase(t *testing.T) {
	s := servertest.Start(t, servertest.Options{ClosedRegistration: true})
	cfg := small
	cfg.URL = s.URL
	rep, out, err := runBench(t, cfg)
	if !errors.Is(err, bench.ErrPhaseFailed) || !strings.Contains(err.Error(), "register") {
		t.Errorf("err = %v, want ErrPhaseFailed naming register", err)
	}
	reg := rep.Phase(bench.PhaseRegister)
	if reg.Count != 0 || reg.Errors != small.Users || !reg.Failed() {
		t.Errorf("register: count %d errors %d", reg.Count, reg.Errors)
	}
	if !strings.Contains(out, "errors:") || !strings.Contains(out, "no m.login.dummy flow") {
		t.Errorf("the table does not show why registration failed:\n%s", out)
	}
	for _, p := range rep.Phases[1:] {
		if p.Skipped == "" || p.Count != 0 || p.Errors != 0 {
			t.Errorf("%s after failed registration: skipped %q, count %d, errors %d", p.Name, p.Skipped, p.Count, p.Errors)
		}
	}
}

// TestUnreachable: a URL where no homeserver answers is one clear error,
// not a table of failures.
func TestUnreachable(t *testing.T) {
	front := httptest.NewServer(http.NotFoundHandler())
	addr := front.URL
	front.Close()
	rep, err := bench.Run(context.Background(), bench.Config{URL: addr}, &bytes.Buffer{}, nil)
	if err == nil || rep != nil || !strings.Contains(err.Error(), "/_matrix/client/versions") {
		t.Errorf("rep %v, err %v; want one error naming /versions", rep, err)
	}
}
