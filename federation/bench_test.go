package federation_test

// Benchmarks for issue 8's figures: a join into a big room, and the
// rate at which a server ingests PDUs from a peer. Both run real servers
// in this one test process, so every memory figure counts all of them.
//
//	go test -run '^$' -bench 'Federation' -benchtime 1x -timeout 30m ./federation/

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth/server/servertest"
)

// bigRoomMembers is the member count of the room BenchmarkFederationJoinBigRoom
// joins, its creator included: 5,000, or $HEARTH_BENCH_BIG_ROOM_MEMBERS.
var bigRoomMembers = func() int {
	if n, err := strconv.Atoi(os.Getenv("HEARTH_BENCH_BIG_ROOM_MEMBERS")); err == nil && n > 1 {
		return n
	}
	return 5000
}()

// BenchmarkFederationJoinBigRoom times one join, from a server new to the
// room, of a public room whose state has 5,000 members: the client's
// POST /join until 200, which covers make_join, send_join with the full
// state and its auth chain, and the import of that state. One op is one
// join; each op joins from a fresh server, so -benchtime 1x is enough.
// The setup (a minute or so) would drown the join in -cpuprofile;
// HEARTH_BENCH_JOIN_PROFILE=file profiles the joins alone.
func BenchmarkFederationJoinBigRoom(b *testing.B) {
	ca := servertest.NewCA(b)
	a := ca.Start(b, servertest.Options{})
	alice := a.Register(b, "alice", "pw-alice")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")

	start := time.Now()
	fillRoom(b, a, roomID, bigRoomMembers-1)
	b.Logf("setup: %d members registered and joined on %s in %v", bigRoomMembers, a.ServerName(), time.Since(start).Round(time.Millisecond))

	joinPath := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(a.ServerName())
	var mem memDelta
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		srvB := ca.Start(b, servertest.Options{})
		bob := srvB.Register(b, "bob", "pw-bob")
		bob.HTTP = &http.Client{Timeout: 5 * time.Minute} // the default 30 s is a test's patience, not a benchmark's
		stopProfile := startJoinProfile(b)
		mem.start()
		b.StartTimer()
		bob.Must(200, "POST", joinPath, map[string]any{})
		b.StopTimer()
		mem.stop()
		stopProfile()
		if n := len(benchJoinedMembers(bob, roomID)); n != bigRoomMembers+1 {
			b.Fatalf("%s sees %d joined members after the join, want %d", srvB.ServerName(), n, bigRoomMembers+1)
		}
	}
	mem.report(b)
}

// startJoinProfile starts a CPU profile into $HEARTH_BENCH_JOIN_PROFILE,
// if set, and returns what stops it.
func startJoinProfile(b *testing.B) (stop func()) {
	path := os.Getenv("HEARTH_BENCH_JOIN_PROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("%v (is -cpuprofile set too?)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// fillRoom registers n users on a and has each join roomID, eight at a
// time: registrations hash passwords in parallel while the room's joins
// queue behind each other.
func fillRoom(b *testing.B, a *servertest.Server, roomID string, n int) {
	b.Helper()
	const workers = 8
	var (
		next   atomic.Int64
		failed atomic.Value // the first failure, a string
		wg     sync.WaitGroup
	)
	joinPath := "/_matrix/client/v3/join/" + url.PathEscape(roomID)
	for range workers {
		wg.Add(1)
		// A worker registers and joins users until n are done or one fails.
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				c := a.Client(b)
				r := c.Do("POST", "/_matrix/client/v3/register", map[string]any{
					"username": fmt.Sprintf("member%d", i), "password": "pw", "auth": map[string]any{"type": "m.login.dummy"},
				})
				if r.Status != 200 {
					failed.CompareAndSwap(nil, fmt.Sprintf("register member%d: %s", i, r))
					return
				}
				c.Token = r.Str("access_token")
				if r := c.Do("POST", joinPath, map[string]any{}); r.Status != 200 {
					failed.CompareAndSwap(nil, fmt.Sprintf("join member%d: %s", i, r))
					return
				}
			}
		}()
	}
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		b.Fatal(msg)
	}
}

// txnPDUs is how many PDUs BenchmarkFederationIngest sends per
// transaction, the spec's maximum, and ingestTxns how many transactions
// make one op.
const (
	txnPDUs    = 50
	ingestTxns = 100
)

// BenchmarkFederationIngest measures how fast server B takes in message
// PDUs a peer C sends through PUT /_matrix/federation/v1/send, 50 to a
// transaction, each event following the one before. One op is 100
// transactions, 5,000 PDUs, so that -benchtime 1x gives a figure; the
// time is the transactions' round trips, which end only once B has
// checked, authorised and stored every PDU in them. The events are
// built and signed before the clock starts.
func BenchmarkFederationIngest(b *testing.B) { benchIngest(b, 1) }

// BenchmarkFederationIngestRooms is BenchmarkFederationIngest with the
// PDUs spread over 5 rooms, 10 of each to a transaction, as a busy peer
// sends them: B takes in different rooms' PDUs at once, so their writes
// share commits.
func BenchmarkFederationIngestRooms(b *testing.B) { benchIngest(b, 5) }

// benchIngest sends C's PDUs to B in transactions of txnPDUs, spread
// over rooms rooms in runs of txnPDUs/rooms, and reports B's rate.
func benchIngest(b *testing.B, rooms int) {
	srv := servertest.Federation(b, 3)
	a, srvB, c := srv[0], srv[1], srv[2]
	alice := a.Register(b, "alice", "pw-alice")
	bob := srvB.Register(b, "bob", "pw-bob")
	carol := c.Register(b, "carol", "pw-carol")
	var chains []*chainForger
	for range rooms {
		roomID := roomOfThree(b, a, alice, bob, carol)
		chains = append(chains, newChainForger(b, srvB, c, roomID))
	}

	// A warm-up transaction first: B's first PDUs from C may cost a key
	// fetch and a connection that the rest do not.
	total := b.N * ingestTxns * txnPDUs
	events := make([]json.RawMessage, txnPDUs+total)
	for i := range events {
		chain := chains[(i/(txnPDUs/rooms))%rooms]
		events[i] = chain.next(carol.UserID, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
	}
	sendChecked(b, c, srvB, events[:txnPDUs])
	events = events[txnPDUs:]

	b.ReportAllocs()
	b.ResetTimer()
	for len(events) > 0 {
		sendChecked(b, c, srvB, events[:txnPDUs])
		events = events[txnPDUs:]
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(total), "µs/event")
}

// roomOfThree has alice create a public room on host, which bob and carol
// (of two other servers) join through host; it returns once bob's server
// sees all three joined.
func roomOfThree(t testing.TB, host *servertest.Server, alice, bob, carol *servertest.Client) string {
	t.Helper()
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	joinPath := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(host.ServerName())
	bob.Must(200, "POST", joinPath, map[string]any{})
	carol.Must(200, "POST", joinPath, map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		n := len(benchJoinedMembers(bob, roomID))
		return n == 3, fmt.Sprintf("%s sees %d joined members, want 3", bob.UserID, n)
	})
	return roomID
}

// sendChecked sends pdus from c to to as one transaction and fails the
// benchmark unless to accepted every one.
func sendChecked(b *testing.B, c, to *servertest.Server, pdus []json.RawMessage) {
	b.Helper()
	var resp struct {
		PDUs map[string]map[string]string `json:"pdus"`
	}
	txn := map[string]any{"origin": c.ServerName(), "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
	err := c.Federation().Client().Call(context.Background(), "PUT", to.ServerName(), "/_matrix/federation/v1/send/"+servertest.UniqueName("txn"), txn, &resp)
	if err != nil {
		b.Fatalf("transaction: %v", err)
	}
	if len(resp.PDUs) != len(pdus) {
		b.Fatalf("%d PDUs sent, %d answered: %v", len(pdus), len(resp.PDUs), resp.PDUs)
	}
	for id, r := range resp.PDUs {
		if r["error"] != "" {
			b.Fatalf("PDU %s refused: %s", id, r["error"])
		}
	}
}

// chainForger builds a chain of events in a room as server c would,
// signed with c's key: the first follows the forward extremities of the
// receiving server's copy of the room, each later one the event before
// it. Unlike forger.build it reads the room once, so building is cheap
// and does not depend on the receiver having stored the previous event.
type chainForger struct {
	*forger
	head *roomHead
}

func newChainForger(t testing.TB, to, c *servertest.Server, roomID string) *chainForger {
	t.Helper()
	f := newForger(t, to, c, roomID)
	return &chainForger{forger: f, head: f.head()}
}

// next builds the next m.room.message of the chain, by sender.
func (f *chainForger) next(sender string, content any) json.RawMessage {
	f.t.Helper()
	ev := f.buildOn(f.head, sender, "m.room.message", nil, content)
	f.head.prev, f.head.depth = []string{ev.ID()}, ev.Depth()
	return ev.JSON()
}

func benchJoinedMembers(c *servertest.Client, roomID string) map[string]any {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/joined_members", nil)
	m, _ := r.JSON["joined"].(map[string]any)
	return m
}

// memDelta records the memory one timed section costs the whole test
// process: the Go heap's peak (sampled), its growth in allocations, and
// the peak resident set (VmHWM, reset at the start where the kernel
// allows it).
type memDelta struct {
	before, after runtime.MemStats
	hwmBefore     int64 // kB, at start, before any reset
	rssStart      int64 // kB, at start, after the heap was returned to the OS
	hwmReset      bool
	peakHeap      atomic.Uint64
	done          chan struct{}
	sampled       sync.WaitGroup
}

func (m *memDelta) start() {
	m.hwmBefore = procStatusKB("VmHWM")
	// Unused heap returned to the OS makes the resident set at the start
	// a floor that the peak can be read against.
	debug.FreeOSMemory()
	runtime.ReadMemStats(&m.before)
	m.rssStart = procStatusKB("VmRSS")
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
	m.hwmReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	m.peakHeap.Store(0)
	m.done = make(chan struct{})
	m.sampled.Add(1)
	// The sampler reads the live heap every 2 ms until stop closes done;
	// runtime/metrics reads without stopping the world.
	go func() {
		defer m.sampled.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > m.peakHeap.Load() {
				m.peakHeap.Store(v)
			}
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (m *memDelta) stop() {
	close(m.done)
	m.sampled.Wait()
	runtime.ReadMemStats(&m.after)
}

func (m *memDelta) report(b *testing.B) {
	const mb = 1 << 20
	hwm := procStatusKB("VmHWM")
	b.ReportMetric(float64(m.before.HeapAlloc)/mb, "heap-before-MB")
	b.ReportMetric(float64(m.peakHeap.Load())/mb, "heap-peak-MB")
	b.ReportMetric(float64(int64(m.after.HeapAlloc)-int64(m.before.HeapAlloc))/mb, "heap-delta-MB")
	b.ReportMetric(float64(m.after.TotalAlloc-m.before.TotalAlloc)/mb, "alloc-MB")
	b.ReportMetric(float64(m.after.Sys)/mb, "sys-MB")
	b.ReportMetric(float64(m.hwmBefore)/1024, "rss-hwm-before-MB")
	b.ReportMetric(float64(m.rssStart)/1024, "rss-start-MB")
	b.ReportMetric(float64(hwm)/1024, "rss-hwm-after-MB")
	b.Logf("memory of the whole test process (all its servers share it): heap %.0f MB at the start, sampled peak %.0f MB; %.0f MB allocated; Sys %.0f MB; VmHWM %.0f MB before, VmRSS %.0f MB at the start, VmHWM %.0f MB after (reset at the start: %v)",
		float64(m.before.HeapAlloc)/mb, float64(m.peakHeap.Load())/mb, float64(m.after.TotalAlloc-m.before.TotalAlloc)/mb,
		float64(m.after.Sys)/mb, float64(m.hwmBefore)/1024, float64(m.rssStart)/1024, float64(hwm)/1024, m.hwmReset)
}

// procStatusKB returns a kB field of /proc/self/status, or -1.
func procStatusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}
