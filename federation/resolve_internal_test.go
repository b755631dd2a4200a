package federation

import (
	"net/http"
	"testing"
	"time"
)

func TestWellKnownCachePeriod(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name     string
		header   http.Header
		want     time.Duration
		explicit bool
	}{
		{"no headers: the default", http.Header{}, 0, false},
		{"max-age", http.Header{"Cache-Control": {"public, max-age=3600"}}, time.Hour, true},
		{"max-age past the ceiling", http.Header{"Cache-Control": {"max-age=99999999999"}}, wellKnownMax, true},
		{"no-store", http.Header{"Cache-Control": {"no-store"}}, 0, true},
		{"max-age before Expires", http.Header{"Cache-Control": {"max-age=60"}, "Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, time.Minute, true},
		{"Expires", http.Header{"Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, 2 * time.Hour, true},
		{"unparsable Expires: expired", http.Header{"Expires": {"0"}}, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cachePeriod(tc.header, now)
			if got != tc.want || ok != tc.explicit {
				t.Fatalf("cachePeriod = %v, %v; want %v, %v", got, ok, tc.want, tc.explicit)
			}
		})
	}
	for range 100 {
		if d := jitter(time.Hour); d < 54*time.Minute || d > 66*time.Minute {
			t.Fatalf("jitter(1h) = %v, want within 10%%", d)
		}
	}
}
