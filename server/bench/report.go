package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// writeTable prints the report as the table operators read.
func writeTable(w io.Writer, rep *Report) error {
	var b strings.Builder
	c := rep.Config
	fmt.Fprintf(&b, "hearth bench  %s  run %s  %d users, %d rooms, %d messages, concurrency %d\n\n",
		c.URL, rep.RunID, c.Users, c.Rooms, c.Messages, c.Concurrency)
	withCPU := rep.Server != nil
	fmt.Fprintf(&b, "%-23s %6s %6s %5s %9s %8s %8s %8s", "PHASE", "COUNT", "ERRORS", "429S", "RATE/S", "P50 MS", "P95 MS", "P99 MS")
	if withCPU {
		fmt.Fprintf(&b, " %8s", "SRV CPU")
	}
	b.WriteString("  OPERATION\n")
	for _, p := range rep.Phases {
		switch {
		case p.Unsupported != "":
			fmt.Fprintf(&b, "%-23s unsupported: %s\n", p.Name, p.Unsupported)
			continue
		case p.Skipped != "":
			fmt.Fprintf(&b, "%-23s skipped: %s\n", p.Name, p.Skipped)
			continue
		}
		fmt.Fprintf(&b, "%-23s %6d %6d %5d %9.1f %8.2f %8.2f %8.2f", p.Name, p.Count, p.Errors, p.RateLimited,
			p.RatePerS, p.P50MS, p.P95MS, p.P99MS)
		if withCPU {
			cpu := "-"
			if p.ServerCPUMS != nil {
				cpu = fmt.Sprintf("%.0f", *p.ServerCPUMS)
			}
			fmt.Fprintf(&b, " %8s", cpu)
		}
		fmt.Fprintf(&b, "  %s\n", p.Note)
	}
	if s := rep.Server; s != nil {
		fmt.Fprintf(&b, "\nserver (pid %d): RSS %.1f MB idle, %.1f MB peak, %.1f MB after; %.2f CPU ms per sent event (%d messages in the send phases); %.0f CPU ms in all\n",
			s.PID, s.IdleRSSMB, s.PeakRSSMB, s.FinalRSSMB, s.CPUMSPerEvent, s.EventsMeasured, s.CPUMSTotal)
	}
	needHeader := true
	for _, p := range rep.Phases {
		kinds := make([]string, 0, len(p.ErrorKinds))
		for k := range p.ErrorKinds {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, func(x, y string) int { return p.ErrorKinds[y] - p.ErrorKinds[x] })
		for _, k := range kinds {
			if needHeader {
				b.WriteString("\nerrors:\n")
				needHeader = false
			}
			fmt.Fprintf(&b, "  %s: %d × %s", p.Name, p.ErrorKinds[k], k)
			if msg := p.FirstErrors[k]; msg != k {
				fmt.Fprintf(&b, " (first: %s)", msg)
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// phaseJSON is one phase in the JSON output. The first six keys are the
// ones the issue promises scripts.
type phaseJSON struct {
	Count       int            `json:"count"`
	Errors      int            `json:"errors"`
	RatePerS    float64        `json:"rate_per_s"`
	P50MS       float64        `json:"p50_ms"`
	P95MS       float64        `json:"p95_ms"`
	P99MS       float64        `json:"p99_ms"`
	RateLimited int            `json:"rate_limited"`
	ElapsedMS   float64        `json:"elapsed_ms"`
	Operation   string         `json:"operation,omitempty"`
	Unsupported bool           `json:"unsupported,omitempty"`
	Reason      string         `json:"reason,omitempty"` // why unsupported or skipped
	Skipped     bool           `json:"skipped,omitempty"`
	ServerCPUMS *float64       `json:"server_cpu_ms,omitempty"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
}

type serverJSON struct {
	IdleRSSMB      float64 `json:"idle_rss_mb"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	CPUMSPerEvent  float64 `json:"cpu_ms_per_event"`
	FinalRSSMB     float64 `json:"final_rss_mb"`
	CPUMSTotal     float64 `json:"cpu_ms_total"`
	EventsMeasured int     `json:"events_measured"`
	PID            int     `json:"pid"`
}

type configJSON struct {
	URL         string `json:"url"`
	RunID       string `json:"run_id"`
	Users       int    `json:"users"`
	Rooms       int    `json:"rooms"`
	Messages    int    `json:"messages"`
	Concurrency int    `json:"concurrency"`
}

// writeJSON prints the report as one JSON object: a key per phase in the
// order they ran, then "server" with a PID, then "config".
func writeJSON(w io.Writer, rep *Report) error {
	type entry struct {
		key string
		val any
	}
	var entries []entry
	for _, p := range rep.Phases {
		j := phaseJSON{
			Count: p.Count, Errors: p.Errors, RatePerS: p.RatePerS, P50MS: p.P50MS, P95MS: p.P95MS, P99MS: p.P99MS,
			RateLimited: p.RateLimited, ElapsedMS: round2(p.Elapsed.Seconds() * 1000), Operation: p.Note,
			Unsupported: p.Unsupported != "", Skipped: p.Skipped != "", Reason: p.Unsupported + p.Skipped,
			ServerCPUMS: p.ServerCPUMS,
		}
		if len(p.ErrorKinds) > 0 {
			j.ErrorKinds = p.ErrorKinds
		}
		entries = append(entries, entry{p.Name, j})
	}
	if s := rep.Server; s != nil {
		entries = append(entries, entry{"server", serverJSON{
			IdleRSSMB: s.IdleRSSMB, PeakRSSMB: s.PeakRSSMB, CPUMSPerEvent: s.CPUMSPerEvent,
			FinalRSSMB: s.FinalRSSMB, CPUMSTotal: s.CPUMSTotal, EventsMeasured: s.EventsMeasured, PID: s.PID,
		}})
	}
	c := rep.Config
	entries = append(entries, entry{"config", configJSON{
		URL: c.URL, RunID: rep.RunID, Users: c.Users, Rooms: c.Rooms, Messages: c.Messages, Concurrency: c.Concurrency,
	}})
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, e := range entries {
		v, err := json.MarshalIndent(e.val, "  ", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  %q: %s", e.key, v)
		if i < len(entries)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}
