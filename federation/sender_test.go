package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server/pdu"
	"hearth/store"
)

const (
	senderName   = "origin.test"
	receiverName = "remote.test:8448"
)

// txnReceiver is a destination that records the transactions it accepts,
// after checking their X-Matrix signature, and dedupes them by txnId as a
// real server does.
type txnReceiver struct {
	*httptest.Server
	roots  *x509.CertPool
	pubKey string // the sender's, unpadded base64

	down      atomic.Bool  // answer 500 without processing
	reject    atomic.Int32 // answer this many more with 400, without processing
	refuse    atomic.Bool  // refuse connections, and cut kept-alive ones
	loseReply atomic.Int32 // process this many more, then answer 500 (a lost reply)
	// refuseAfterLoss sets refuse once a reply was lost.
	refuseAfterLoss atomic.Bool
	refused         atomic.Int32 // requests refused or cut

	mu       sync.Mutex // guards the fields below
	attempts []time.Time
	contents map[string]string // txnId → pdus and edus of its first attempt
	done     map[string]bool   // txnIds processed
	txns     []recvTxn         // processed, in order
	errs     []string
}

type recvTxn struct {
	id         string
	pdus, edus []string
}

var xMatrixParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

func startReceiver(t *testing.T, pubKey string) *txnReceiver {
	t.Helper()
	r := &txnReceiver{pubKey: pubKey, contents: map[string]string{}, done: map[string]bool{}}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	cert, roots := mintCertificate(t, []string{"remote.test"})
	r.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	r.Config.ErrorLog = log.New(io.Discard, "", 0) // connections cut by Close
	r.StartTLS()
	t.Cleanup(r.Close)
	r.roots = roots
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			t.Error(e)
		}
	})
	return r
}

func (r *txnReceiver) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *txnReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.refuse.Load() {
		r.refused.Add(1)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := strings.CutPrefix(req.URL.Path, "/_matrix/federation/v1/send/")
	if req.Method != "PUT" || !ok {
		r.fail("unexpected request %s %s", req.Method, req.URL)
		http.NotFound(w, req)
		return
	}
	params := map[string]string{}
	for _, m := range xMatrixParam.FindAllStringSubmatch(req.Header.Get("Authorization"), -1) {
		params[m[1]] = m[2]
	}
	if params["origin"] != senderName || params["destination"] != receiverName ||
		pdu.VerifyRequest(r.pubKey, params["sig"], req.Method, req.URL.RequestURI(), params["origin"], params["destination"], body) != nil {
		r.fail("txn %s: bad X-Matrix header %q", id, req.Header.Get("Authorization"))
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var txn struct {
		Origin string            `json:"origin"`
		TS     int64             `json:"origin_server_ts"`
		PDUs   []json.RawMessage `json:"pdus"`
		EDUs   []json.RawMessage `json:"edus"`
	}
	if err := json.Unmarshal(body, &txn); err != nil || txn.Origin != senderName || txn.TS == 0 || txn.PDUs == nil {
		r.fail("txn %s: bad body %s", id, body)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	got := recvTxn{id: id}
	for _, p := range txn.PDUs {
		got.pdus = append(got.pdus, string(p))
	}
	for _, e := range txn.EDUs {
		got.edus = append(got.edus, string(e))
	}
	if len(got.pdus) > 50 || len(got.edus) > 100 {
		r.fail("txn %s: %d PDUs and %d EDUs", id, len(got.pdus), len(got.edus))
	}
	content := fmt.Sprint(got.pdus, got.edus)
	if first, ok := r.contents[id]; !ok {
		r.contents[id] = content
	} else if first != content {
		r.fail("txn %s retried with other content", id)
	}
	r.attempts = append(r.attempts, time.Now())
	if r.reject.Load() > 0 {
		r.reject.Add(-1)
		http.Error(w, `{"errcode":"M_BAD_JSON","error":"refused"}`, http.StatusBadRequest)
		return
	}
	if r.down.Load() {
		http.Error(w, `{"errcode":"M_UNKNOWN","error":"down"}`, http.StatusInternalServerError)
		return
	}
	if !r.done[id] { // a retry of a processed transaction is answered, not processed again
		r.done[id] = true
		r.txns = append(r.txns, got)
	}
	if r.loseReply.Load() > 0 {
		r.loseReply.Add(-1)
		if r.refuseAfterLoss.Load() {
			r.refuse.Store(true)
		}
		http.Error(w, "reply lost", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"pdus":{}}`))
}

// received returns every processed PDU and EDU, in order.
func (r *txnReceiver) received() (pdus, edus []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.txns {
		pdus = append(pdus, t.pdus...)
		edus = append(edus, t.edus...)
	}
	return pdus, edus
}

func (r *txnReceiver) attemptCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attempts)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// testSender is a Sender over its own data dir, sending to a txnReceiver.
type testSender struct {
	*federation.Sender
	store *store.Store
}

func newSender(t *testing.T, dir string, key ed25519.PrivateKey, r *txnReceiver) *testSender {
	t.Helper()
	st, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := r.Listener.Addr().String()
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		if a != receiverName || r.refuse.Load() {
			r.refused.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c := federation.NewClient(federation.ClientConfig{ServerName: senderName, KeyID: "ed25519:test", Key: key,
		RootCAs: r.roots, AllowPrivate: true, DialContext: dial})
	s := &testSender{store: st, Sender: federation.NewSender(c, st, federation.SenderConfig{
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	})}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

var stopMu sync.Mutex

// stop closes the sender and its store (again is harmless).
func (s *testSender) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	s.Close()
	_ = s.store.Close()
}

func newKey(t *testing.T) (ed25519.PrivateKey, string) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key, base64.RawStdEncoding.EncodeToString(pub)
}

// items returns n JSON objects numbered from first, with kind in them.
func items(kind string, first, n int) ([][]byte, []string) {
	var raw [][]byte
	var strs []string
	for i := first; i < first+n; i++ {
		s := fmt.Sprintf(`{"kind":%q,"n":%d}`, kind, i)
		raw, strs = append(raw, []byte(s)), append(strs, s)
	}
	return raw, strs
}

// queued reports whether the sender's store still has entries queued.
func (s *testSender) queued(t *testing.T) bool {
	var dests []string
	if err := s.store.View(func(tx *store.Tx) error { dests = tx.FederationDestinations(); return nil }); err != nil {
		t.Fatal(err)
	}
	return len(dests) > 0
}

func TestSenderBatchesInOrder(t *testing.T) {
	key, pub := newKey(t)
	r := startReceiver(t, pub)
	s := newSender(t, t.TempDir(), key, r)
	pdus, wantPDUs := items("pdu", 0, 120)
	edus, wantEDUs := items("edu", 0, 30)
	if err := s.Enqueue([]string{receiverName, senderName}, pdus, edus); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "everything to arrive", func() bool { p, e := r.received(); return len(p)+len(e) >= 150 })
	waitFor(t, "the queue to empty", func() bool { return !s.queued(t) })
	gotPDUs, gotEDUs := r.received()
	if !slices.Equal(gotPDUs, wantPDUs) || !slices.Equal(gotEDUs, wantEDUs) {
		t.Fatalf("received %d PDUs, %d EDUs, not the 120 and 30 sent in order:\n%v\n%v", len(gotPDUs), len(gotEDUs), gotPDUs, gotEDUs)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var sizes []string
	for _, txn := range r.txns {
		sizes = append(sizes, fmt.Sprintf("%d+%d", len(txn.pdus), len(txn.edus)))
	}
	// Full transactions: 50, 50, then the last 20 PDUs with the EDUs.
	if want := []string{"50+0", "50+0", "20+30"}; !slices.Equal(sizes, want) {
		t.Errorf("transactions (PDUs+EDUs) = %v, want %v", sizes, want)
	}
	if len(r.attempts) != 3 {
		t.Errorf("%d attempts for 3 transactions", len(r.attempts))
	}
}

func TestSenderRetriesWhileDown(t *testing.T) {
	key, pub := newKey(t)
	r := startReceiver(t, pub)
	r.down.Store(true)
	s := newSender(t, t.TempDir(), key, r)
	pdus, wantPDUs := items("pdu", 0, 30)
	edus, wantEDUs := items("edu", 0, 5)
	if err := s.Enqueue([]string{receiverName}, pdus, edus); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a few attempts", func() bool { return r.attemptCount() >= 4 })
	// More is queued while the first transaction is being retried: it
	// must not join that transaction, whose txnId the receiver may
	// already have seen.
	pdus2, wantPDUs2 := items("pdu", 30, 40)
	if err := s.Enqueue([]string{receiverName}, pdus2, nil); err != nil {
		t.Fatal(err)
	}
	// Backoff: 10 ms doubling to 80 ms allows a handful of attempts in
	// 400 ms, where retrying at once would make hundreds.
	before := r.attemptCount()
	time.Sleep(400 * time.Millisecond)
	if n := r.attemptCount() - before; n < 2 || n > 12 {
		t.Errorf("%d attempts in 400 ms while down", n)
	}
	if p, e := r.received(); len(p)+len(e) != 0 || !s.queued(t) {
		t.Fatalf("processed %d while down, or the queue emptied", len(p)+len(e))
	}
	// The receiver comes back, but the reply to its first transaction is
	// lost: the retry carries the same txnId, and is not processed twice.
	r.loseReply.Store(1)
	r.down.Store(false)
	s.Retry(receiverName)
	waitFor(t, "the queue to empty", func() bool { return !s.queued(t) })
	gotPDUs, gotEDUs := r.received()
	if want := append(wantPDUs, wantPDUs2...); !slices.Equal(gotPDUs, want) || !slices.Equal(gotEDUs, wantEDUs) {
		t.Fatalf("received PDUs %v EDUs %v", gotPDUs, gotEDUs)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.txns) != 2 { // the first 30+5, then the 40 queued later
		t.Errorf("%d transactions processed, want 2", len(r.txns))
	}
}

func TestSenderQueueSurvivesRestart(t *testing.T) {
	key, pub := newKey(t)
	r := startReceiver(t, pub)
	dir := t.TempDir()
	s := newSender(t, dir, key, r)
	// The first transaction is processed, but its reply is lost and the
	// receiver then becomes unreachable.
	r.loseReply.Store(1)
	r.refuseAfterLoss.Store(true)
	pdus, want := items("pdu", 0, 30)
	if err := s.Enqueue([]string{receiverName}, pdus, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lost reply", func() bool { return r.refuse.Load() })
	refused := r.refused.Load()
	pdus2, want2 := items("pdu", 30, 45)
	edus, wantEDUs := items("edu", 0, 10)
	if err := s.Enqueue([]string{receiverName}, pdus2, edus); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retries", func() bool { return r.refused.Load() >= refused+2 })
	s.stop()

	// Restarted on the same data dir, with more queued before it starts
	// sending.
	s = newSender(t, dir, key, r)
	pdus3, want3 := items("pdu", 75, 5)
	if err := s.Enqueue([]string{receiverName}, pdus3, nil); err != nil {
		t.Fatal(err)
	}
	r.refuse.Store(false)
	s.Retry(receiverName)
	waitFor(t, "the queue to empty", func() bool { return !s.queued(t) })
	gotPDUs, gotEDUs := r.received()
	if want := slices.Concat(want, want2, want3); !slices.Equal(gotPDUs, want) || !slices.Equal(gotEDUs, wantEDUs) {
		t.Fatalf("received PDUs %v EDUs %v", gotPDUs, gotEDUs)
	}
}

// A transaction the destination refuses with a 4xx is dropped, not
// retried for ever: the entries after it still arrive.
func TestSenderDropsRefusedTransaction(t *testing.T) {
	key, pub := newKey(t)
	r := startReceiver(t, pub)
	r.reject.Store(1)
	s := newSender(t, t.TempDir(), key, r)
	refused, _ := items("pdu", 0, 10)
	if err := s.Enqueue([]string{receiverName}, refused, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused transaction", func() bool { return r.attemptCount() >= 1 && !s.queued(t) })
	later, want := items("pdu", 10, 5)
	if err := s.Enqueue([]string{receiverName}, later, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the later entries", func() bool { p, _ := r.received(); return len(p) == 5 })
	if got, _ := r.received(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	if n := r.attemptCount(); n != 2 {
		t.Fatalf("%d attempts, want 2: the refused transaction was retried", n)
	}
}
