package syncapi_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/server/servertest"
)

// BenchmarkInitialSync100Rooms: a user in 100 rooms of 1,000 events each
// does an initial sync with the default filter. Run it with
// go test -run '^$' -bench InitialSync -benchtime 20x ./server/syncapi/
// (the setup sends 100,000 events and takes a minute or two).
func BenchmarkInitialSync100Rooms(b *testing.B) {
	s := servertest.Start(b, servertest.Options{})
	alice := s.Register(b, "alice", "pw")
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = createRoom(b, alice, map[string]any{"name": fmt.Sprint("room ", i)})
	}
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.Client(b)
			c.Token = alice.Token
			for i := w; i < len(rooms); i += 10 {
				for j := range 990 {
					c.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/w%d-%d", rooms[i], w, j),
						map[string]any{"msgtype": "m.text", "body": "a short family message"})
				}
			}
		}()
	}
	wg.Wait()
	runtime.GC()
	before := rssKB()
	peak := before
	b.ResetTimer()
	for b.Loop() {
		r := alice.Must(200, "GET", "/_matrix/client/v3/sync", nil)
		if len(r.Body) == 0 {
			b.Fatal("empty sync")
		}
		peak = max(peak, rssKB())
	}
	b.ReportMetric(float64(peak-before)/1024, "MB-rss-growth")
}

// BenchmarkLongPollers1000 measures what 1,000 clients waiting in /sync
// add to the process's RSS (client goroutines included, so it overstates
// the server's share).
func BenchmarkLongPollers1000(b *testing.B) {
	s := servertest.Start(b, servertest.Options{})
	users := make([]*servertest.Client, 1000)
	for i := range users {
		users[i] = s.Register(b, fmt.Sprint("poller", i), "pw")
	}
	tokens := make([]string, len(users))
	for i, c := range users {
		tokens[i] = syncOnce(b, c, "", 0, "").Str("next_batch")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 2000}
	for b.Loop() {
		runtime.GC()
		before := rssKB()
		var wg sync.WaitGroup
		for i, c := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", s.URL+"/_matrix/client/v3/sync?timeout=3000&since="+tokens[i], nil)
				req.Header.Set("Authorization", "Bearer "+c.Token)
				if resp, err := tr.RoundTrip(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		time.Sleep(2 * time.Second) // all are waiting now
		during := rssKB()
		wg.Wait()
		b.ReportMetric(float64(during-before)/1024, "MB-rss-1000-waiting")
	}
}

// rssKB reads this process's resident set size.
func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return 0
}
