package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 for user space on every architecture.
const clockTicks = 100

// sampleEvery is how often the server's RSS is read while the run goes on:
// often enough to catch a peak of a phase lasting a second.
const sampleEvery = 50 * time.Millisecond

// proc reads one process's memory and CPU time from /proc.
type proc struct {
	pid int

	mu     sync.Mutex // guards peakKB
	peakKB int64
}

func newProc(pid int) (*proc, error) {
	p := &proc{pid: pid}
	if _, err := p.rssKB(); err != nil {
		return nil, fmt.Errorf("--pid %d: %w", pid, err)
	}
	if _, err := p.cpu(); err != nil {
		return nil, fmt.Errorf("--pid %d: %w", pid, err)
	}
	return p, nil
}

// rssKB is the process's resident set size now, in KiB (VmRSS).
func (p *proc) rssKB() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status (a zombie?)", p.pid)
}

// cpu is the process's user plus system CPU time so far.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields after its closing parenthesis. utime and stime are
	// fields 14 and 15, so the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", p.pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", p.pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable utime/stime in /proc/%d/stat", p.pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// sample reads the RSS now and keeps the peak.
func (p *proc) sample() int64 {
	kb, err := p.rssKB()
	if err != nil {
		return 0
	}
	p.mu.Lock()
	p.peakKB = max(p.peakKB, kb)
	p.mu.Unlock()
	return kb
}

// watch samples the RSS until stop is closed. It runs in its own goroutine
// so that a peak between two phases is seen.
func (p *proc) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.sample()
		}
	}
}

func (p *proc) peak() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peakKB
}

// ServerResult is what --pid measured of the server's process.
type ServerResult struct {
	PID            int
	IdleRSSMB      float64 // before the first request
	PeakRSSMB      float64 // the most seen while the run went on
	FinalRSSMB     float64 // after the last phase
	CPUMSPerEvent  float64 // server CPU during the send phases per message they sent
	CPUMSTotal     float64 // server CPU over the whole run
	EventsMeasured int     // the messages CPUMSPerEvent divides by
}

func mb(kb int64) float64 {
	return round2(float64(kb) / 1024)
}
