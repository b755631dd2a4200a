package processtest

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartup measures what an operator waits for: from exec to the
// first 200 on /versions, on an empty data directory. It also reports the
// resident memory of the process at that moment.
//
//	go test -run '^$' -bench Startup -benchtime 10x ./server/processtest/
func BenchmarkStartup(b *testing.B) {
	var took []time.Duration
	var rss []int
	for b.Loop() {
		b.StopTimer()
		dir, addr := b.TempDir(), freeAddr(b)
		b.StartTimer()
		start := time.Now()
		p := launch(b, addr, nil, "serve", "--data", dir, "--http", addr)
		p.waitReadyEvery(time.Millisecond) // fine-grained: this is what is measured
		took = append(took, time.Since(start))
		b.StopTimer()
		rss = append(rss, vmRSS(b, p.cmd.Process.Pid))
		p.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(median(took).Microseconds())/1000, "ms-to-ready-p50")
	slices.Sort(rss)
	b.ReportMetric(float64(rss[len(rss)/2]), "KiB-rss-ready")
}

// BenchmarkLogin measures password logins one after another with the
// production argon2id parameters, and the process's memory after the 50
// registrations it sets up with.
//
//	go test -run '^$' -bench Login -benchtime 50x ./server/processtest/
func BenchmarkLogin(b *testing.B) {
	const accounts = 50
	srv := serve(b, b.TempDir(), "--open-registration", "--no-rate-limit")
	idle := vmRSS(b, srv.cmd.Process.Pid)
	for i := range accounts {
		register(b, srv.url, fmt.Sprintf("user%d", i), "a fine password")
	}
	afterReg := vmRSS(b, srv.cmd.Process.Pid)

	var took []time.Duration
	c := newClient(b, srv.url)
	i := 0
	for b.Loop() {
		start := time.Now()
		c.must(http.StatusOK, "POST", "/_matrix/client/v3/login", loginBody(fmt.Sprintf("user%d", i%accounts), "a fine password"))
		took = append(took, time.Since(start))
		i++
	}
	// Metrics are reported after b.Loop, which clears earlier ones.
	b.ReportMetric(float64(idle), "KiB-rss-idle")
	b.ReportMetric(float64(afterReg), "KiB-rss-after-50-reg")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(took[(len(took)*95+99)/100-1].Microseconds())/1000, "ms-p95")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// vmRSS returns the resident set size of a process in KiB, from Linux's
// /proc; the benchmark is skipped elsewhere.
func vmRSS(tb testing.TB, pid int) int {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatalf("parse %q: %v", line, err)
			}
			return n
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
