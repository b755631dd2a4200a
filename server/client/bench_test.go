package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth/server/servertest"
	"hearth/store"
)

// The room benchmarks send real messages over real HTTP (keep-alive, one
// connection per client) to a real server with a real bbolt file; every
// send waits for its 200, which comes after the fsync. Client and server
// share this process, so the CPU figures (cpu-us/send, from getrusage)
// include the client's share of the work (about a tenth, by the profile):
// they bound the server's from above. Figures for DESIGN.md's targets:
//
//	go test -run '^$' -bench Send -benchtime 5000x -count 3 ./server/client/
//	go test -run '^$' -bench DiskPerMessage -benchtime 1x ./server/client/
//	go test -run '^$' -bench SendConcurrentRooms -cpuprofile cpu.out ./server/client/

// BenchmarkSendSequential measures one client in one room sending one
// message after another, each after the previous 200.
func BenchmarkSendSequential(b *testing.B) {
	s := servertest.Start(b, servertest.Options{})
	bc := newBenchClient(b, s, 0)
	cpu := startCPU()
	i := 0
	for b.Loop() {
		if err := bc.send(i); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b, i)
}

// BenchmarkSendConcurrentRooms measures 10 clients, each in its own room,
// each sending one message after another.
func BenchmarkSendConcurrentRooms(b *testing.B) {
	const clients = 10
	s := servertest.Start(b, servertest.Options{})
	var bcs []*benchClient
	for c := range clients {
		bcs = append(bcs, newBenchClient(b, s, c))
	}
	b.ResetTimer()
	cpu := startCPU()
	sendConcurrently(b, bcs, b.N)
	b.StopTimer()
	cpu.report(b, b.N)
}

// BenchmarkDiskPerMessage sends 20,000 short text messages across 10
// rooms and reports what they added to hearth.db, per message: the growth
// of the file (coarse: bbolt grows it in steps of up to 16 MiB), of its
// written part (hwm, free pages included) and of the pages in use; and
// the last beyond the event's own stored JSON, which is what the indexes,
// the page headers and partly filled pages cost. Per bucket, it logs what
// the messages added. The work is fixed, whatever b.N:
//
//	go test -run '^$' -bench DiskPerMessage -benchtime 1x ./server/client/
func BenchmarkDiskPerMessage(b *testing.B) {
	const (
		clients  = 10
		messages = 20000
	)
	s := servertest.Start(b, servertest.Options{})
	var bcs []*benchClient
	for c := range clients {
		bcs = append(bcs, newBenchClient(b, s, c))
	}
	s.Stop(b)
	before := diskUsage(b, s.DataDir)
	s.Restart(b)
	for _, bc := range bcs {
		bc.url = s.URL
	}
	sendConcurrently(b, bcs, messages)
	s.Stop(b)
	after := diskUsage(b, s.DataDir)

	perMsg := func(f func(u *usage) int64) float64 { return float64(f(after)-f(before)) / messages }
	used := perMsg(func(u *usage) int64 { return u.used })
	avgJSON := float64(messageJSONBytes(b, s.DataDir, bcs)) / messages
	b.ReportMetric(perMsg(func(u *usage) int64 { return u.file }), "file-B/msg")
	b.ReportMetric(perMsg(func(u *usage) int64 { return u.hwm }), "hwm-B/msg")
	b.ReportMetric(used, "used-B/msg")
	b.ReportMetric(avgJSON, "json-B/msg")
	b.ReportMetric(used-avgJSON, "beyond-json-B/msg")
	for _, name := range slices.Sorted(maps.Keys(after.buckets)) {
		a, bf := after.buckets[name], before.buckets[name]
		if d := a.LeafAlloc + a.BranchAlloc - bf.LeafAlloc - bf.BranchAlloc; d != 0 {
			b.Logf("%-28s %7.1f B/msg allocated, %7.1f B/msg in use, %d keys", name,
				float64(d)/messages, float64(a.LeafInuse+a.BranchInuse-bf.LeafInuse-bf.BranchInuse)/messages, a.KeyN)
		}
	}
}

// benchClient is one user with a room of its own and a connection kept
// alive.
type benchClient struct {
	hc     *http.Client
	url    string
	token  string
	roomID string
	n      int // which client it is, for unique transaction IDs
}

func newBenchClient(b *testing.B, s *servertest.Server, n int) *benchClient {
	b.Helper()
	c := s.Register(b, servertest.UniqueName("bench"), "pw")
	r := c.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"})
	bc := &benchClient{
		hc:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second},
		url: s.URL, token: c.Token, roomID: r.Str("room_id"), n: n,
	}
	b.Cleanup(bc.hc.CloseIdleConnections)
	return bc
}

// send sends message i as a short text message and waits for its 200.
func (bc *benchClient) send(i int) error {
	body := fmt.Appendf(nil, `{"msgtype":"m.text","body":"message %d from client %d"}`, i, bc.n)
	req, err := http.NewRequest("PUT", bc.url+roomPath(bc.roomID, fmt.Sprintf("/send/m.room.message/b%d", i)), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bc.token)
	resp, err := bc.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("send: %d %s", resp.StatusCode, out)
	}
	return nil
}

// sendConcurrently sends n messages in all, each client sending its share
// one after another, all clients at once.
func sendConcurrently(b *testing.B, bcs []*benchClient, n int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(bcs))
	for _, bc := range bcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next.Add(1) <= int64(n); i++ {
				if err := bc.send(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// cpuClock is the process's CPU time and the wall time at a moment.
type cpuClock struct {
	cpu  time.Duration
	wall time.Time
}

func startCPU() cpuClock {
	return cpuClock{cpu: processCPU(), wall: time.Now()}
}

// report reports the throughput and the CPU time per send since c.
func (c cpuClock) report(b *testing.B, sends int) {
	wall, cpu := time.Since(c.wall), processCPU()-c.cpu
	b.ReportMetric(float64(sends)/wall.Seconds(), "sends/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(sends), "cpu-us/send")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// usage is how much of hearth.db is taken, by the file and by bbolt.
type usage struct {
	file    int64 // the file's size, which bbolt grows in steps of up to 16 MiB
	hwm     int64 // the end of the last page bbolt has written
	used    int64 // the pages bbolt uses: hwm less the free pages
	buckets map[string]bolt.BucketStats
}

// diskUsage reads the usage of the stopped server's hearth.db.
func diskUsage(b *testing.B, dir string) *usage {
	b.Helper()
	path := filepath.Join(dir, store.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	u := &usage{file: fi.Size(), buckets: map[string]bolt.BucketStats{}}
	err = db.View(func(tx *bolt.Tx) error {
		u.hwm = tx.Size()
		u.used = u.hwm - int64(db.Stats().FreePageN*tx.DB().Info().PageSize)
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			u.buckets[string(name)] = bk.Stats()
			return nil
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// messageJSONBytes sums the stored JSON of the m.room.message events in
// the clients' rooms.
func messageJSONBytes(b *testing.B, dir string, bcs []*benchClient) int64 {
	b.Helper()
	st, err := store.Open(dir, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var total int64
	err = st.View(func(tx *store.Tx) error {
		for _, bc := range bcs {
			room, err := tx.RoomByID(bc.roomID)
			if err != nil {
				return err
			}
			entries, err := tx.Timeline(room.NID, nil, store.Forward, 1<<30)
			if err != nil {
				return err
			}
			for _, e := range entries {
				var ev struct{ Type string }
				if json.Unmarshal(e.Event.JSON, &ev) == nil && ev.Type == "m.room.message" {
					total += int64(len(e.Event.JSON))
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
