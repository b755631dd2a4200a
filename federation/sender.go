package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"hearth/store"
)

// Transaction limits (Server-Server API, "Transactions").
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

// Default backoff while a destination is unreachable: doubling from the
// first to the last.
const (
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Hour
)

// SenderConfig configures a Sender.
type SenderConfig struct {
	// MinBackoff and MaxBackoff bound the wait between two attempts at a
	// failing destination; zero means 1 s and 1 h. Tests shorten them.
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
}

// Sender delivers PDUs and EDUs to other servers through a persistent
// queue per destination: what Enqueue accepted is on disk, and is sent in
// order, in transactions of at most 50 PDUs and 100 EDUs, retried with
// exponential backoff while the destination is down, and deleted only once
// it answered 200, so nothing is lost across restarts.
type Sender struct {
	client *Client
	store  *store.Store
	cfg    SenderConfig
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the destination goroutines

	mu     sync.Mutex // guards queues, closed
	queues map[string]*destQueue
	closed bool
}

// destQueue is the running goroutine of one destination.
type destQueue struct {
	wake  chan struct{} // (cap 1) more entries were queued
	retry chan struct{} // (cap 1) try now, whatever the backoff says
}

// NewSender returns a sender that signs with client and queues in st. It
// sends nothing until Start or Enqueue.
func NewSender(client *Client, st *store.Store, cfg SenderConfig) *Sender {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(defaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{client: client, store: st, cfg: cfg, ctx: ctx, cancel: cancel, queues: map[string]*destQueue{}}
}

// Start resumes sending to every destination with queued entries, such as
// those left by the previous run.
func (s *Sender) Start() error {
	var dests []string
	if err := s.store.View(func(tx *store.Tx) error {
		dests = tx.FederationDestinations()
		return nil
	}); err != nil {
		return err
	}
	for _, d := range dests {
		s.kick(d)
	}
	return nil
}

// Enqueue queues pdus then edus (each a JSON object) for every
// destination, durably before it returns, and starts sending. Our own
// server name among destinations is skipped.
func (s *Sender) Enqueue(destinations []string, pdus, edus [][]byte) error {
	if len(pdus)+len(edus) == 0 || len(destinations) == 0 {
		return nil
	}
	var start func()
	if err := s.store.Update(func(tx *store.Tx) (err error) {
		start, err = s.QueueTx(tx, destinations, pdus, edus)
		return err
	}); err != nil {
		return err
	}
	start()
	return nil
}

// QueueTx is Enqueue inside tx, the caller's write transaction: the
// entries commit with whatever else tx writes, or not at all. start,
// called once tx is durable, starts sending.
func (s *Sender) QueueTx(tx *store.Tx, destinations []string, pdus, edus [][]byte) (start func(), err error) {
	items := make([]store.FedQueued, 0, len(pdus)+len(edus))
	for _, p := range pdus {
		if !json.Valid(p) {
			return nil, errors.New("federation: enqueue: a PDU is not valid JSON")
		}
		items = append(items, store.FedQueued{Kind: store.FedPDU, JSON: p})
	}
	for _, e := range edus {
		if !json.Valid(e) {
			return nil, errors.New("federation: enqueue: an EDU is not valid JSON")
		}
		items = append(items, store.FedQueued{Kind: store.FedEDU, JSON: e})
	}
	if len(items) == 0 {
		return func() {}, nil
	}
	var dests []string
	seen := map[string]bool{}
	for _, d := range destinations {
		if d == s.client.ServerName() || seen[d] {
			continue
		}
		if _, _, _, err := parseServerName(d); err != nil {
			return nil, fmt.Errorf("federation: enqueue for %q: %w", d, err)
		}
		seen[d] = true
		dests = append(dests, d)
	}
	for _, d := range dests {
		// A copy per destination: QueueFederation sets Seq.
		if err := tx.QueueFederation(d, append([]store.FedQueued(nil), items...)); err != nil {
			return nil, err
		}
	}
	return func() {
		for _, d := range dests {
			s.kick(d)
		}
	}, nil
}

// Retry makes a destination waiting out its backoff try again now: call
// it when the destination shows signs of life, such as a request from it.
func (s *Sender) Retry(destination string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[destination]; q != nil {
		signal(q.retry)
	}
}

// Close stops every destination goroutine (an in-flight transaction is
// abandoned, to be sent again on the next Start) and waits for them. The
// queue is kept.
func (s *Sender) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// kick wakes destination's goroutine, starting it if there is none.
func (s *Sender) kick(destination string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if q := s.queues[destination]; q != nil {
		signal(q.wake)
		return
	}
	q := &destQueue{wake: make(chan struct{}, 1), retry: make(chan struct{}, 1)}
	s.queues[destination] = q
	s.wg.Add(1)
	go s.run(destination, q)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run is the goroutine of one destination. It exists while the
// destination has queued entries, so that one slow or dead server delays
// only its own queue and transactions to one server go one at a time, in
// order. It ends when the queue is empty (retire) or when Close cancels
// the sender's context.
func (s *Sender) run(destination string, q *destQueue) {
	defer s.wg.Done()
	log := s.cfg.Log.With("destination", destination)
	var backoff time.Duration
	for s.ctx.Err() == nil {
		var batch []store.FedQueued
		err := s.store.Update(func(tx *store.Tx) error {
			var err error
			batch, err = tx.FederationBatch(destination, maxTxnPDUs, maxTxnEDUs)
			return err
		})
		if err == nil && len(batch) == 0 {
			if s.retire(destination, q) {
				return
			}
			continue
		}
		if err == nil {
			err = s.send(destination, batch)
			if err == nil {
				last := batch[len(batch)-1].Seq
				err = s.store.Update(func(tx *store.Tx) error { return tx.AckFederationBatch(destination, last) })
			}
		}
		if err == nil {
			backoff = 0
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		if permanent(err) {
			// The destination refused the transaction itself and will
			// refuse it again: retrying would block its queue for good.
			log.Warn("federation transaction refused; dropping it", "err", err, "entries", len(batch))
			last := batch[len(batch)-1].Seq
			if err := s.store.Update(func(tx *store.Tx) error { return tx.AckFederationBatch(destination, last) }); err == nil {
				backoff = 0
				continue
			}
		}
		backoff = min(max(2*backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
		log.Info("federation transaction failed; will retry", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-q.retry:
			t.Stop()
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// permanent reports whether a transaction failed in a way retrying cannot
// mend: a 4xx answer other than 401 (the peer may not have our key yet),
// 408 and 429.
func permanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 &&
		e.Status != http.StatusUnauthorized && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// retire removes destination's goroutine once its queue was found empty,
// unless more was queued meanwhile. Deciding under mu is what makes a
// racing Enqueue either wake this goroutine or start a new one.
func (s *Sender) retire(destination string, q *destQueue) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-q.wake:
		return false
	default:
	}
	delete(s.queues, destination)
	return true
}

// txnID names a batch by its first entry's seq: a retry sends the same
// entries (FederationBatch keeps them) under the same ID, so the
// receiver's (origin, txnId) dedupe recognises it.
func txnID(batch []store.FedQueued) string {
	return strconv.FormatUint(batch[0].Seq, 10)
}

// send sends batch as one transaction; nil means the destination answered
// 200. PDUs it rejected are logged: retrying them would not help.
func (s *Sender) send(destination string, batch []store.FedQueued) error {
	var txn struct {
		Origin         string            `json:"origin"`
		OriginServerTS int64             `json:"origin_server_ts"`
		PDUs           []json.RawMessage `json:"pdus"`
		EDUs           []json.RawMessage `json:"edus,omitempty"`
	}
	txn.Origin, txn.OriginServerTS, txn.PDUs = s.client.ServerName(), time.Now().UnixMilli(), []json.RawMessage{}
	for _, e := range batch {
		if e.Kind == store.FedPDU {
			txn.PDUs = append(txn.PDUs, e.JSON)
		} else {
			txn.EDUs = append(txn.EDUs, e.JSON)
		}
	}
	var resp struct {
		PDUs map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	id := txnID(batch)
	if err := s.client.Call(s.ctx, "PUT", destination, "/_matrix/federation/v1/send/"+url.PathEscape(id), &txn, &resp); err != nil {
		return err
	}
	for eventID, r := range resp.PDUs {
		if r.Error != "" {
			s.cfg.Log.Info("federation: destination rejected a PDU", "destination", destination, "txn_id", id, "event_id", eventID, "error", r.Error)
		}
	}
	return nil
}
