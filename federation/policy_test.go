package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server/pdu"
	"hearth/server/servertest"
)

// spamRefusal is the stand-in policy server's refusal, which a client
// must be shown verbatim.
const spamRefusal = "The message appears to contain possible spam"

// policyServer stands in for a room's policy server, an external
// service: a bare homeserver (a listener: it publishes its key, joins
// rooms, takes transactions) that also answers
// POST /_matrix/policy/v1/sign. It checks every request against the
// spec and fails the test on a malformed one: X-Matrix signed by a
// server it knows, addressed to it; the body a PDU, hashed and signed by
// its sender's server; never the m.room.policy state event. It refuses
// events whose content mentions "spam" (400 M_FORBIDDEN), fails on
// those that mention "outage" (500), and signs the rest with its event
// key, which is not its published one (the spec's SHOULD NOT).
type policyServer struct {
	*listener
	t     *testing.T
	key   ed25519.PrivateKey // the key in m.room.policy
	peers map[string]string  // server name → published ed25519 key

	mu     sync.Mutex        // guards rooms, asked, closed
	rooms  map[string]string // room ID → version, of the rooms it joined
	asked  []signRequest
	closed bool // the test is over: nothing more to report
}

// signRequest is one request to /sign, as the policy server read it.
type signRequest struct {
	Origin, RoomID, EventID, Type string
	StateKey                      *string
	Content                       string
}

func startPolicyServer(t *testing.T, ca *servertest.CA, peers ...*servertest.Server) *policyServer {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ps := &policyServer{listener: startListener(t, ca), t: t, key: key, peers: map[string]string{}, rooms: map[string]string{}}
	for _, p := range peers {
		_, pub := signingKey(t, p)
		ps.peers[p.ServerName()] = pub
	}
	ps.peers[ps.name] = base64.RawStdEncoding.EncodeToString(ps.signer.Key.Public().(ed25519.PublicKey))
	ps.mux.HandleFunc("POST /_matrix/policy/v1/sign", ps.sign)
	t.Cleanup(func() {
		ps.mu.Lock()
		ps.closed = true
		ps.mu.Unlock()
	})
	return ps
}

// userID is the policy server's user, whom it joins rooms as.
func (ps *policyServer) userID() string { return "@policy:" + ps.name }

// publicKey is the key of its signatures, for m.room.policy.
func (ps *policyServer) publicKey() string {
	return base64.RawStdEncoding.EncodeToString(ps.key.Public().(ed25519.PublicKey))
}

// policyContent is the content of an m.room.policy naming it.
func (ps *policyServer) policyContent() map[string]any {
	return map[string]any{"via": ps.name, "public_keys": map[string]any{"ed25519": ps.publicKey()}}
}

// joinRoom joins its user to a room through via.
func (ps *policyServer) joinRoom(t *testing.T, via *servertest.Server, roomID string) {
	t.Helper()
	ev, _, err := ps.sendJoin(t, via, roomID, ps.userID(), "")
	if err != nil {
		t.Fatalf("send_join: %v", err)
	}
	ps.mu.Lock()
	ps.rooms[roomID] = ev.Version()
	ps.mu.Unlock()
}

// requests returns the sign requests it had about a room.
// askedBy reports whether origin asked ps to sign an event of roomID whose
// content holds text.
func (ps *policyServer) askedBy(roomID, origin, text string) bool {
	for _, req := range ps.requests(roomID) {
		if req.Origin == origin && strings.Contains(req.Content, text) {
			return true
		}
	}
	return false
}

func (ps *policyServer) requests(roomID string) []signRequest {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []signRequest
	for _, r := range ps.asked {
		if r.RoomID == roomID {
			out = append(out, r)
		}
	}
	return out
}

// requestsFor returns the origins that asked it to sign an event.
func (ps *policyServer) requestsFor(eventID string) []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []string
	for _, r := range ps.asked {
		if r.EventID == eventID && eventID != "" {
			out = append(out, r.Origin)
		}
	}
	return out
}

// fail reports a malformed request to the test and answers it 400.
func (ps *policyServer) fail(w http.ResponseWriter, format string, args ...any) {
	ps.mu.Lock()
	if !ps.closed {
		ps.t.Errorf("policy server: "+format, args...)
	}
	ps.mu.Unlock()
	matrixError(w, http.StatusBadRequest, "M_BAD_JSON", fmt.Sprintf(format, args...))
}

func matrixError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": msg})
}

// xMatrix parses an X-Matrix Authorization header into its parameters.
func xMatrix(h string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(h, "X-Matrix ")
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, false
		}
		out[k] = strings.Trim(v, `"`)
	}
	return out, true
}

func (ps *policyServer) sign(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		ps.fail(w, "read body: %v", err)
		return
	}
	// Request authentication: a known server, signing for us.
	auth, ok := xMatrix(r.Header.Get("Authorization"))
	if !ok {
		ps.fail(w, "no X-Matrix Authorization: %q", r.Header.Get("Authorization"))
		return
	}
	origin := auth["origin"]
	pub, known := ps.peers[origin]
	if !known || auth["destination"] != ps.name {
		ps.fail(w, "X-Matrix from %q to %q", origin, auth["destination"])
		return
	}
	if err := pdu.VerifyRequest(pub, auth["sig"], r.Method, r.RequestURI, origin, ps.name, body); err != nil {
		ps.fail(w, "X-Matrix signature of %s: %v", origin, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		ps.fail(w, "Content-Type %q", ct)
		return
	}
	// The body: a PDU of a room we are in.
	var head struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		ps.fail(w, "body is not a JSON object: %v", err)
		return
	}
	ps.mu.Lock()
	version, inRoom := ps.rooms[head.RoomID]
	ps.mu.Unlock()
	if !inRoom {
		ps.record(signRequest{Origin: origin, RoomID: head.RoomID})
		matrixError(w, http.StatusNotFound, "M_NOT_FOUND", "Unknown room")
		return
	}
	ev, err := pdu.ParseUntrusted(version, body)
	if err != nil {
		ps.fail(w, "not a PDU of room version %s: %v", version, err)
		return
	}
	if ev.Redacted() {
		ps.fail(w, "the PDU's content does not match its hash")
		return
	}
	keys := func(_ context.Context, server, _ string, _ int64) (string, error) {
		if k, ok := ps.peers[server]; ok {
			return k, nil
		}
		return "", fmt.Errorf("unknown server %s", server)
	}
	if err := pdu.VerifySignatures(r.Context(), ev, keys); err != nil {
		ps.fail(w, "the PDU's signatures: %v", err)
		return
	}
	if ev.Type() == "m.room.policy" && ev.StateKeyIs("") {
		ps.fail(w, "asked to sign the m.room.policy state event, which the spec forbids")
		return
	}
	ps.record(signRequest{Origin: origin, RoomID: ev.RoomID(), EventID: ev.ID(), Type: ev.Type(), StateKey: ev.StateKey(), Content: string(ev.Content())})
	switch content := string(ev.Content()); {
	case strings.Contains(content, "spam"):
		matrixError(w, http.StatusBadRequest, "M_FORBIDDEN", spamRefusal)
		return
	case strings.Contains(content, "outage"):
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "The policy server is having a bad day")
		return
	}
	signed, err := pdu.AddSignature(ev, pdu.Signer{ServerName: ps.name, KeyID: pdu.PolicyKeyID, Key: ps.key})
	if err != nil {
		ps.fail(w, "sign: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]map[string]string{ps.name: {pdu.PolicyKeyID: signed.Signature(ps.name, pdu.PolicyKeyID)}})
}

// joinOf returns the ID of the join of userID the policy server was
// asked to sign in a room, "" if none.
func joinOf(ps *policyServer, roomID, userID string) string {
	for _, r := range ps.requests(roomID) {
		if r.Type == "m.room.member" && r.StateKey != nil && *r.StateKey == userID && strings.Contains(r.Content, `"join"`) {
			return r.EventID
		}
	}
	return ""
}

func (ps *policyServer) record(r signRequest) {
	ps.mu.Lock()
	ps.asked = append(ps.asked, r)
	ps.mu.Unlock()
}

// fetchEvent fetches an event from s over federation as the policy
// server, nil when s does not serve it.
func (ps *policyServer) fetchEvent(t *testing.T, s *servertest.Server, roomID, eventID string) *pdu.Event {
	t.Helper()
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	err := ps.client.Call(context.Background(), "GET", s.ServerName(), "/_matrix/federation/v1/event/"+url.PathEscape(eventID), nil, &resp)
	if federation.IsStatus(err, http.StatusNotFound) {
		return nil
	}
	if err != nil || len(resp.PDUs) != 1 {
		t.Fatalf("event %s from %s: %v (%d PDUs)", eventID, s.ServerName(), err, len(resp.PDUs))
	}
	ps.mu.Lock()
	version := ps.rooms[roomID]
	ps.mu.Unlock()
	ev, err := pdu.ParseUntrusted(version, resp.PDUs[0])
	if err != nil {
		t.Fatalf("event %s from %s: %v", eventID, s.ServerName(), err)
	}
	return ev
}

// signedByPolicy reports whether ev carries a signature of ps that
// verifies with its key.
func (ps *policyServer) signedByPolicy(ev *pdu.Event) bool {
	return pdu.VerifyEventSignature(ev, ps.name, pdu.PolicyKeyID, ps.publicKey()) == nil
}

// sendTxn sends pdus to s as one transaction from the policy
// server and returns the per-PDU results.
func (ps *policyServer) sendTxn(t *testing.T, s *servertest.Server, pdus ...*pdu.Event) map[string]map[string]string {
	t.Helper()
	var raw []json.RawMessage
	for _, ev := range pdus {
		raw = append(raw, ev.JSON())
	}
	var resp struct {
		PDUs map[string]map[string]string `json:"pdus"`
	}
	txn := map[string]any{"origin": ps.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": raw, "edus": []any{}}
	if err := ps.client.Call(context.Background(), "PUT", s.ServerName(), "/_matrix/federation/v1/send/"+servertest.UniqueName("txn"), txn, &resp); err != nil {
		t.Fatalf("transaction to %s: %v", s.ServerName(), err)
	}
	return resp.PDUs
}

// syncBodiesUntil long-polls c's sync from since until the room's
// timeline brings marker, and returns every message body it brought.
func syncBodiesUntil(t *testing.T, c *servertest.Client, since, roomID, marker string) []string {
	t.Helper()
	var bodies []string
	syncUntil(t, c, since, fmt.Sprintf("%q in %s", marker, roomID), func(resp map[string]any) bool {
		_, got := timelineEvents(syncTimeline(resp, roomID))
		bodies = append(bodies, got...)
		return slices.Contains(bodies, marker)
	})
	return bodies
}

func putState(t *testing.T, c *servertest.Client, roomID, typ, key string, content any) string {
	t.Helper()
	return c.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/"+url.PathEscape(key), content).Str("event_id")
}

// waitState waits until c sees a room's state event of typ and key.
func waitState(t *testing.T, c *servertest.Client, roomID, typ, key string) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/"+url.PathEscape(key), nil)
		return r.Status == 200, fmt.Sprintf("%s: %s %q: %s", c.UserID, typ, key, r)
	})
}

// A room that names a policy server in m.room.policy (Matrix 1.18,
// "Policy Servers") has every event but that state event itself signed
// by it: each server asks it before sending its users' events, refuses
// its users what it refuses (with its error, verbatim) and sends those
// nowhere, and soft-fails events from other servers that it will not
// sign, asking it itself when an event comes without its signature.
func TestPolicyServer(t *testing.T) {
	ca := servertest.NewCA(t)
	a, b, c := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	ps := startPolicyServer(t, ca, a, b, c)
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")

	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	ps.joinRoom(t, a, roomID)
	putState(t, alice, roomID, "m.room.policy", "", ps.policyContent())
	waitState(t, bob, roomID, "m.room.policy", "")
	waitMembership(t, bob, roomID, ps.userID(), "join")

	t.Run("messages are signed and delivered", func(t *testing.T) {
		id := send(alice, roomID, "hello from alice")
		if got := ps.requestsFor(id); !slices.Equal(got, []string{a.ServerName()}) {
			t.Fatalf("the policy server was asked to sign alice's message by %v, want once by %s", got, a.ServerName())
		}
		waitBodies(t, bob, roomID, "hello from alice")
		// B found the signature A got valid: it asked for none.
		if got := ps.requestsFor(id); len(got) != 1 {
			t.Errorf("the policy server was asked to sign alice's message by %v, want once by %s", got, a.ServerName())
		}
		for _, s := range []*servertest.Server{a, b} {
			if ev := ps.fetchEvent(t, s, roomID, id); ev == nil || !ps.signedByPolicy(ev) {
				t.Errorf("%s serves alice's message without the policy server's signature", s.ServerName())
			}
		}

		id = send(bob, roomID, "hello from bob")
		if got := ps.requestsFor(id); !slices.Equal(got, []string{b.ServerName()}) {
			t.Fatalf("the policy server was asked to sign bob's message by %v, want once by %s", got, b.ServerName())
		}
		waitBodies(t, alice, roomID, "hello from bob")
	})

	t.Run("spam is refused to its sender and goes nowhere", func(t *testing.T) {
		since := syncToken(bob)
		r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+servertest.UniqueName("t"),
			map[string]any{"msgtype": "m.text", "body": "cheap spam here"})
		if r.Status != 400 || r.Errcode() != "M_FORBIDDEN" || r.Str("error") != spamRefusal {
			t.Fatalf("sending spam: %s, want the policy server's 400 M_FORBIDDEN %q", r, spamRefusal)
		}
		if !ps.askedBy(roomID, a.ServerName(), "cheap spam here") {
			t.Fatal("A refused the spam without asking the policy server")
		}
		send(alice, roomID, "after the refusal")
		if got := syncBodiesUntil(t, bob, since, roomID, "after the refusal"); slices.Contains(got, "cheap spam here") {
			t.Fatalf("the refused spam reached bob: %q", got)
		}
		if got := timelineBodies(alice, roomID); slices.Contains(got, "cheap spam here") {
			t.Fatalf("the refused spam is in alice's own timeline: %q", got)
		}
	})

	t.Run("a policy server that fails sends nothing", func(t *testing.T) {
		r := bob.Do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+servertest.UniqueName("t"),
			map[string]any{"msgtype": "m.text", "body": "during the outage"})
		if r.Status != http.StatusBadGateway || r.Errcode() != "M_UNKNOWN" {
			t.Fatalf("sending while the policy server fails: %s, want 502 M_UNKNOWN", r)
		}
		if !ps.askedBy(roomID, b.ServerName(), "during the outage") {
			t.Fatal("B gave up without asking the policy server")
		}
		since := syncToken(alice)
		send(bob, roomID, "after the failure")
		if got := syncBodiesUntil(t, alice, since, roomID, "after the failure"); slices.Contains(got, "during the outage") {
			t.Fatalf("the unsigned message reached alice: %q", got)
		}
		if got := timelineBodies(bob, roomID); slices.Contains(got, "during the outage") {
			t.Fatalf("the unsigned message is in bob's own timeline: %q", got)
		}
	})

	t.Run("events from other servers without its signature", func(t *testing.T) {
		// The policy server's own user sends B events as a server that
		// does not ask for signatures would: B must ask for them.
		f := &forger{t: t, a: b, signer: ps.signer, roomID: roomID}
		text := func(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }
		spam := f.build(ps.userID(), "m.room.message", nil, text("spam from afar"))
		// A signature under the policy server's name and key ID, by
		// another key, is no signature of it.
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		bySomeone, err := pdu.AddSignature(f.build(ps.userID(), "m.room.message", nil, text("spam with a forged signature")),
			pdu.Signer{ServerName: ps.name, KeyID: pdu.PolicyKeyID, Key: other})
		if err != nil {
			t.Fatal(err)
		}
		fine := f.build(ps.userID(), "m.room.message", nil, text("unsigned but fine"))
		since := syncToken(bob)
		// Soft-failed events are no error of the transaction.
		for id, res := range ps.sendTxn(t, b, spam, bySomeone, fine) {
			if res["error"] != "" {
				t.Fatalf("B answered %s with an error: %v", id, res)
			}
		}
		for _, ev := range []*pdu.Event{spam, bySomeone, fine} {
			if got := ps.requestsFor(ev.ID()); !slices.Equal(got, []string{b.ServerName()}) {
				t.Errorf("the policy server was asked to sign %s by %v, want once by %s", ev.Content(), got, b.ServerName())
			}
		}
		got := syncBodiesUntil(t, bob, since, roomID, "unsigned but fine")
		if slices.Contains(got, "spam from afar") || slices.Contains(got, "spam with a forged signature") {
			t.Fatalf("spam the policy server refused reached bob: %q", got)
		}
		for _, ev := range []*pdu.Event{spam, bySomeone} {
			if served := ps.fetchEvent(t, b, roomID, ev.ID()); served != nil {
				t.Errorf("B serves the soft-failed %s", ev.Content())
			}
		}
		if ev := ps.fetchEvent(t, b, roomID, fine.ID()); ev == nil || !ps.signedByPolicy(ev) {
			t.Errorf("B serves the event it had signed without the policy server's signature")
		}
	})

	t.Run("joins through another server are checked too", func(t *testing.T) {
		// C, not in the room, builds its users' joins from A's
		// template, without the room's state, so it cannot ask: A asks
		// when they arrive, and refuses C what the policy server
		// refuses (here a user whose display name is spam).
		spammer := c.Register(t, "spammer", "pw-spammer")
		r := spammer.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
		if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
			t.Fatalf("the spammer's join: %s, want 403 M_FORBIDDEN", r)
		}
		if got := ps.requestsFor(joinOf(ps, roomID, spammer.UserID)); !slices.Equal(got, []string{a.ServerName()}) {
			t.Fatalf("the policy server was asked to sign the spammer's join by %v, want once by %s", got, a.ServerName())
		}

		carol := c.Register(t, "carol", "pw-carol")
		carol.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
		send(alice, roomID, "after the joins")
		waitBodies(t, bob, roomID, "after the joins")
		waitMembership(t, bob, roomID, carol.UserID, "join")
		// A passes the signature it got on with the join: B asks none.
		if got := ps.requestsFor(joinOf(ps, roomID, carol.UserID)); !slices.Equal(got, []string{a.ServerName()}) {
			t.Fatalf("the policy server was asked to sign carol's join by %v, want once by %s", got, a.ServerName())
		}
		for _, c := range []*servertest.Client{alice, bob} {
			if got := membership(c, roomID, spammer.UserID); got == "join" {
				t.Errorf("%s sees the spammer joined", c.UserID)
			}
		}
	})

	t.Run("m.room.policy itself is never sent to it", func(t *testing.T) {
		// The policy server fails the test when asked to sign this one.
		content := ps.policyContent()
		content["public_keys"].(map[string]any)["example"] = "not-a-key"
		putState(t, alice, roomID, "m.room.policy", "", content)
		// Any other m.room.policy, such as one with a state key, is.
		id := putState(t, alice, roomID, "m.room.policy", "elsewhere", map[string]any{})
		if got := ps.requestsFor(id); !slices.Equal(got, []string{a.ServerName()}) {
			t.Fatalf("the policy server was asked to sign m.room.policy %q by %v, want once by %s", "elsewhere", got, a.ServerName())
		}
		send(alice, roomID, "still signed")
		waitBodies(t, bob, roomID, "still signed")
	})

	t.Run("an upgrade's last events in the old room are signed", func(t *testing.T) {
		alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/upgrade", map[string]any{"new_version": "11"})
		waitState(t, bob, roomID, "m.room.tombstone", "")
		var tombstone string
		for _, req := range ps.requests(roomID) {
			if req.Type == "m.room.tombstone" {
				tombstone = req.EventID
			}
		}
		if got := ps.requestsFor(tombstone); !slices.Equal(got, []string{a.ServerName()}) {
			t.Fatalf("the policy server was asked to sign the tombstone by %v, want once by %s", got, a.ServerName())
		}
	})
}

// Rooms that use no policy server send it nothing: without
// m.room.policy, with one that lacks a key, or naming a server with no
// one joined to the room (the spec's conditions for using one).
func TestPolicyServerUnused(t *testing.T) {
	ca := servertest.NewCA(t)
	a, b := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	ps := startPolicyServer(t, ca, a, b)
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")

	cases := []struct {
		name   string
		policy map[string]any // nil: none
		joined bool           // the policy server joins the room
	}{
		{"no m.room.policy", nil, true},
		{"no public key", map[string]any{"via": ps.name, "public_keys": map[string]any{}}, true},
		{"the policy server not in the room", ps.policyContent(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
			if tc.joined {
				ps.joinRoom(t, a, roomID)
			}
			if tc.policy != nil {
				putState(t, alice, roomID, "m.room.policy", "", tc.policy)
				waitState(t, bob, roomID, "m.room.policy", "")
			}
			send(alice, roomID, "spam from alice")
			send(bob, roomID, "spam from bob")
			waitBodies(t, alice, roomID, "spam from alice", "spam from bob")
			waitBodies(t, bob, roomID, "spam from alice", "spam from bob")
			if got := ps.requests(roomID); len(got) != 0 {
				t.Fatalf("the policy server was asked to sign events of the room: %+v", got)
			}
		})
	}
}

// Hearth is not a policy server: /_matrix/policy/v1/sign is an endpoint
// it does not implement.
func TestNotAPolicyServer(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	var resp map[string]any
	err := b.Federation().Client().Call(context.Background(), "POST", a.ServerName(), "/_matrix/policy/v1/sign", map[string]any{}, &resp)
	var fe *federation.Error
	if !errors.As(err, &fe) || fe.Status != http.StatusNotFound || fe.Code != "M_UNRECOGNIZED" {
		t.Fatalf("POST /_matrix/policy/v1/sign: %v, want 404 M_UNRECOGNIZED", err)
	}
}
