package federation_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/server"
	"hearth/server/pdu"
	"hearth/server/servertest"
)

// scriptedPeer stands in for server c once c is stopped: it listens on
// c's federation port with a certificate of the test CA, so a reaches it
// as c, and answers what a asks of c as the test scripts it, with events
// the forger signed with c's key. It plays the peers Complement runs: one
// that does not answer /event_auth, /state or whatever else the test
// leaves unscripted (404 M_NOT_FOUND). Transactions a sends it succeed.
type scriptedPeer struct {
	mu       sync.Mutex                                     // guards the fields below
	events   map[string]json.RawMessage                     // served by /event
	missing  func(latest []string) []json.RawMessage        // /get_missing_events; nil: 404
	stateIDs map[string]struct{ state, authChain []string } // /state_ids by event_id
	seen     []string                                       // the paths a asked for
}

func startScriptedPeer(t *testing.T, ca *servertest.CA, c *servertest.Server) *scriptedPeer {
	t.Helper()
	u, err := url.Parse(c.FederationURL)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	cert, key, err := server.MintCertificate(ca.CertFile, ca.KeyFile, "localhost", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+u.Port())
	if err != nil {
		t.Fatalf("taking over %s's port: %v", c.ServerName(), err)
	}
	p := &scriptedPeer{events: map[string]json.RawMessage{}, stateIDs: map[string]struct{ state, authChain []string }{}}
	hs := &http.Server{Handler: p}
	go func() { _ = hs.ServeTLS(ln, cert, key) }() // until hs.Close at cleanup
	t.Cleanup(func() { hs.Close() })
	return p
}

func (p *scriptedPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, r.URL.Path)
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/_matrix/federation/v1/send/"):
		reply(map[string]any{"pdus": map[string]any{}})
		return
	case strings.HasPrefix(path, "/_matrix/federation/v1/event/"):
		if ev, ok := p.events[strings.TrimPrefix(path, "/_matrix/federation/v1/event/")]; ok {
			reply(map[string]any{"origin": r.Host, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{ev}})
			return
		}
	case strings.HasPrefix(path, "/_matrix/federation/v1/get_missing_events/") && p.missing != nil:
		var in struct {
			Latest []string `json:"latest_events"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		reply(map[string]any{"events": p.missing(in.Latest)})
		return
	case strings.HasPrefix(path, "/_matrix/federation/v1/state_ids/"):
		if st, ok := p.stateIDs[r.URL.Query().Get("event_id")]; ok {
			reply(map[string]any{"pdu_ids": st.state, "auth_chain_ids": st.authChain})
			return
		}
	}
	w.WriteHeader(404)
	reply(map[string]any{"errcode": "M_NOT_FOUND", "error": "not scripted"})
}

// serve has the peer answer /event for evs.
func (p *scriptedPeer) serve(evs ...*pdu.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range evs {
		p.events[e.ID()] = e.JSON()
	}
}

// asked reports whether a asked the peer for a path starting with prefix.
func (p *scriptedPeer) asked(prefix string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.seen, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// after returns the head that follows h once ev is appended to it: ev
// the only prev event and, a state event, in the state.
func after(h *roomHead, ev *pdu.Event) *roomHead {
	auth := h.auth
	if ev.IsState() {
		auth = withState(auth, ev)
	}
	return &roomHead{version: h.version, depth: ev.Depth(), prev: []string{ev.ID()}, auth: auth}
}

// withState returns state with ev in place of the event of its type and
// state key.
func withState(state []*pdu.Event, ev *pdu.Event) []*pdu.Event {
	out := slices.DeleteFunc(slices.Clone(state), func(e *pdu.Event) bool {
		return e.Type() == ev.Type() && *e.StateKey() == *ev.StateKey()
	})
	return append(out, ev)
}

// on returns h with other auth state: what a forged event claims.
func on(h *roomHead, auth []*pdu.Event) *roomHead {
	return &roomHead{version: h.version, depth: h.depth, prev: h.prev, auth: auth}
}

func eventStatus(c *servertest.Client, roomID, eventID string) int {
	return c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(eventID), nil).Status
}

func displayName(c *servertest.Client, roomID, userID string) string {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(userID), nil)
	return r.Str("displayname")
}

// A peer that, like Complement's, answers neither /event_auth nor /state:
// a takes in what it sends all the same, as Synapse does. Prev events
// come first (get_missing_events), so auth events are mostly known by the
// time they are checked; those still missing are fetched one by one with
// /event; a gap is filled from /state_ids and /event. Events whose auth
// events were rejected are rejected, and an event after a rejected one
// has the state before it.
func TestIngestFromPeerWithoutEventAuth(t *testing.T) {
	ca := servertest.NewCA(t)
	a, c := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	alice := a.Register(t, "alice", "pw-alice")
	mallory := c.Register(t, "mallory", "pw-mallory")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	mallory.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	waitMembership(t, alice, roomID, mallory.UserID, "join")
	f := newForger(t, a, c, roomID)
	peer := startScriptedPeer(t, ca, c)
	msg := func(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }
	member := func(name string) map[string]any { return map[string]any{"membership": "join", "displayname": name} }
	m := mallory.UserID
	sendOne := func(t *testing.T, evs ...*pdu.Event) {
		t.Helper()
		raws := make([]json.RawMessage, len(evs))
		for i, e := range evs {
			raws[i] = e.JSON()
		}
		if _, err := sendTxn(t, c, a, raws...); err != nil {
			t.Fatalf("transaction: %v", err)
		}
	}

	t.Run("prev events before auth events", func(t *testing.T) {
		// Five name changes; a hears only of the last, whose auth event
		// (the fourth) it learns as a missing prev event.
		h := f.head()
		var chain []*pdu.Event
		for i := range 5 {
			ev := f.buildOn(h, m, "m.room.member", &m, member(fmt.Sprintf("Mallory %d", i)))
			chain, h = append(chain, ev), after(h, ev)
		}
		peer.mu.Lock()
		peer.missing = func([]string) []json.RawMessage {
			var out []json.RawMessage
			for _, e := range chain[:4] {
				out = append(out, e.JSON())
			}
			return out
		}
		peer.mu.Unlock()
		sendOne(t, chain[4])
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			got := displayName(alice, roomID, m)
			return got == "Mallory 4", fmt.Sprintf("alice sees mallory as %q", got)
		})
	})

	t.Run("missing auth events fetched one by one", func(t *testing.T) {
		// A name change a never hears of, cited by a message.
		h := f.head()
		rename := f.buildOn(h, m, "m.room.member", &m, member("Mallory outlier"))
		ev := f.buildOn(on(h, withState(h.auth, rename)), m, "m.room.message", nil, msg("on an outlier"))
		peer.serve(rename)
		sendOne(t, ev)
		waitBodies(t, alice, roomID, "on an outlier")
	})

	t.Run("rejected auth events and rejected prev events", func(t *testing.T) {
		// R: power levels mallory may not send, rejected. O: a name change
		// citing R, only served by /event. X and Y cite O, so are rejected;
		// Y follows X. S follows Y and is fine: the state after the rejected
		// Y is the state before it.
		h := f.head()
		empty := ""
		r := f.buildOn(h, m, "m.room.power_levels", &empty, map[string]any{"users": map[string]any{m: 100}})
		sendOne(t, r)
		o := f.buildOn(on(h, withState(h.auth, r)), m, "m.room.member", &m, member("Mallory on R"))
		peer.serve(o)
		x := f.buildOn(on(h, withState(h.auth, o)), m, "m.room.message", nil, msg("cites O"))
		y := f.buildOn(on(after(h, x), withState(h.auth, o)), m, "m.room.message", nil, msg("cites O after X"))
		s := f.buildOn(on(after(h, y), h.auth), m, "m.room.message", nil, msg("sentinel"))
		sendOne(t, x, y, s)
		waitBodies(t, alice, roomID, "sentinel")
		for name, id := range map[string]string{"R": r.ID(), "O": o.ID(), "X": x.ID(), "Y": y.ID()} {
			if st := eventStatus(alice, roomID, id); st != 404 {
				t.Errorf("alice gets %s: %d, want 404", name, st)
			}
		}
		if got := displayName(alice, roomID, m); got == "Mallory on R" {
			t.Errorf("O took effect")
		}
	})

	t.Run("a gap filled from state_ids, one auth event withheld", func(t *testing.T) {
		// Enough state that lacking a few of its events is worth single
		// /event requests rather than a whole /state.
		for i := range 60 {
			alice.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.pad/%d", url.PathEscape(roomID), i), map[string]any{})
		}
		// A..E: name changes, each on the one before; the peer withholds B,
		// so C, D and E cannot be checked and never become state.
		h := f.head()
		names := []string{"A", "B", "C", "D", "E"}
		var chain []*pdu.Event
		for _, n := range names {
			ev := f.buildOn(h, m, "m.room.member", &m, member("Mallory "+n))
			chain, h = append(chain, ev), after(h, ev)
		}
		atGap := f.buildOn(h, m, "m.room.message", nil, msg("for state_ids"))
		h = after(h, atGap)
		gme := f.buildOn(h, m, "m.room.message", nil, msg("for get_missing_events"))
		h = after(h, gme)
		last := f.buildOn(h, m, "m.room.message", nil, msg("for send"))
		var state, authChain []string
		for _, e := range h.auth {
			state = append(state, e.ID())
		}
		for _, e := range f.head().auth {
			if e.Type() == "m.room.member" && *e.StateKey() == m {
				continue
			}
			authChain = append(authChain, e.ID())
		}
		for _, e := range chain[:4] {
			authChain = append(authChain, e.ID())
		}
		peer.serve(atGap, gme, last, chain[0], chain[2], chain[3], chain[4])
		peer.mu.Lock()
		peer.missing = func([]string) []json.RawMessage { return []json.RawMessage{gme.JSON()} }
		peer.stateIDs[atGap.ID()] = struct{ state, authChain []string }{state, authChain}
		peer.mu.Unlock()
		before := displayName(alice, roomID, m)
		sendOne(t, last)
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			return peer.asked("/_matrix/federation/v1/event/" + chain[1].ID()), "a never asked for B"
		})
		if !peer.asked("/_matrix/federation/v1/state_ids/") {
			t.Errorf("a never asked for /state_ids")
		}
		if got := displayName(alice, roomID, m); got != before {
			t.Errorf("alice sees mallory as %q, want %q: C, D or E took effect without B", got, before)
		}
		for _, body := range timelineBodies(alice, roomID) {
			if body == "for send" || body == "for get_missing_events" {
				t.Errorf("alice sees %q, which E authorises", body)
			}
		}
	})
}
