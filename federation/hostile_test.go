package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server/pdu"
	"hearth/server/servertest"
	"hearth/store"
)

// forger builds events in a room of server a as server c would, signed
// with c's real key, so a test can send a the events a hostile or broken
// peer might.
type forger struct {
	t      testing.TB
	a      *servertest.Server
	signer pdu.Signer
	roomID string
}

func newForger(t testing.TB, a, c *servertest.Server, roomID string) *forger {
	f := &forger{t: t, a: a, roomID: roomID}
	err := c.Store().View(func(tx *store.Tx) error {
		k, err := tx.SigningKey()
		if err != nil {
			return err
		}
		f.signer = pdu.Signer{ServerName: c.ServerName(), KeyID: k.ID, Key: ed25519.NewKeyFromSeed(k.Seed)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// roomHead is what the next event of a room builds on, as a has it.
type roomHead struct {
	version string
	depth   int64
	prev    []string
	auth    []*pdu.Event // the current state; Build picks the auth events from it
}

// head reads a's forward extremities and current state of the room.
func (f *forger) head() *roomHead {
	f.t.Helper()
	h := &roomHead{}
	err := f.a.Store().View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(f.roomID)
		if err != nil {
			return err
		}
		h.version, h.depth = room.Version, room.Depth
		for _, pos := range room.Extremities {
			rec, err := tx.Event(pos)
			if err != nil {
				return err
			}
			ev, err := pdu.Parse(room.Version, rec.JSON, false)
			if err != nil {
				return err
			}
			h.prev = append(h.prev, ev.ID())
		}
		state, err := tx.CurrentState(room.NID, "")
		if err != nil {
			return err
		}
		for _, pos := range state {
			rec, err := tx.Event(pos)
			if err != nil {
				return err
			}
			ev, err := pdu.Parse(room.Version, rec.JSON, rec.Flags&store.FlagRedacted != 0)
			if err != nil {
				return err
			}
			h.auth = append(h.auth, ev)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// buildOn makes an event by sender of typ with content on h, signed as c.
func (f *forger) buildOn(h *roomHead, sender, typ string, stateKey *string, content any) *pdu.Event {
	f.t.Helper()
	raw, _ := json.Marshal(content)
	p := &pdu.Proto{Version: h.version, RoomID: f.roomID, Sender: sender, Type: typ, StateKey: stateKey, Content: raw,
		PrevEvents: h.prev, Depth: h.depth + 1}
	ev, err := pdu.Build(p, h.auth, f.signer, time.Now())
	if err != nil {
		f.t.Fatalf("build: %v", err)
	}
	return ev
}

// build makes an event by sender of typ with content, following a's
// forward extremities and authorised by a's current state.
func (f *forger) build(sender, typ string, stateKey *string, content any) *pdu.Event {
	f.t.Helper()
	return f.buildOn(f.head(), sender, typ, stateKey, content)
}

// sendTxn sends pdus to a as one transaction from c's server.
func sendTxn(t *testing.T, c, a *servertest.Server, pdus ...json.RawMessage) (map[string]map[string]string, error) {
	t.Helper()
	var resp struct {
		PDUs map[string]map[string]string `json:"pdus"`
	}
	txn := map[string]any{"origin": c.ServerName(), "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
	err := c.Federation().Client().Call(context.Background(), "PUT", a.ServerName(), "/_matrix/federation/v1/send/"+servertest.UniqueName("txn"), txn, &resp)
	return resp.PDUs, err
}

// Hostile peers: every bad PDU is refused alone, none of it reaches a
// client, and the room goes on working for everyone. A PDU that cannot
// be trusted (signature, size) is answered with an error; one that fails
// the auth rules is stored as rejected and answered without one, as
// Synapse answers it.
func TestHostilePeer(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	mallory := c.Register(t, "mallory", "pw-mallory")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	joinPath := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(a.ServerName())
	bob.Must(200, "POST", joinPath, map[string]any{})
	mallory.Must(200, "POST", joinPath, map[string]any{})
	f := newForger(t, a, c, roomID)
	msg := func(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

	cases := []struct {
		name     string
		pdu      func() json.RawMessage
		authRule bool // refused by the auth rules: no error in the answer
	}{
		{"forged signature: a user of A, signed by C", func() json.RawMessage {
			return f.build(alice.UserID, "m.room.message", nil, msg("forged alice")).JSON()
		}, false},
		{"sender of a server not in the room", func() json.RawMessage {
			return f.build("@eve:"+c.ServerName(), "m.room.message", nil, msg("eve was never here")).JSON()
		}, true},
		{"over 65,536 bytes", func() json.RawMessage {
			// Signed and hashed as it should be; unsigned, which neither
			// covers, carries it over the limit.
			var obj map[string]any
			_ = json.Unmarshal(f.build(mallory.UserID, "m.room.message", nil, msg("big")).JSON(), &obj)
			obj["unsigned"] = map[string]any{"pad": strings.Repeat("x", 70000)}
			raw, _ := json.Marshal(obj)
			return raw
		}, false},
		{"power levels raised without power", func() json.RawMessage {
			empty := ""
			return f.build(mallory.UserID, "m.room.power_levels", &empty, map[string]any{"users": map[string]int{mallory.UserID: 100}}).JSON()
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.pdu()
			results, err := sendTxn(t, c, a, raw)
			if err != nil {
				t.Fatalf("the transaction itself was refused: %v", err)
			}
			for id, r := range results {
				if _, hasErr := r["error"]; !hasErr && !tc.authRule {
					t.Fatalf("PDU %s accepted: %v", id, results)
				}
			}
			if ev, err := pdu.ParseUntrusted("12", raw); tc.authRule && err == nil {
				if r, ok := results[ev.ID()]; !ok || r["error"] != "" {
					t.Fatalf("PDU %s answered %v; want it listed without an error", ev.ID(), results)
				}
			}
			var head map[string]any
			_ = json.Unmarshal(raw, &head)
			if ev, err := pdu.ParseUntrusted("12", raw); err == nil {
				r := alice.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(ev.ID()), nil)
				if r.Status != 404 {
					t.Fatalf("the refused event is served: %s", r)
				}
			}
		})
	}

	// A wrong content hash: the spec has the event redacted, so the
	// tampered content never reaches a client.
	ev := f.build(mallory.UserID, "m.room.message", nil, msg("honest"))
	var obj map[string]any
	_ = json.Unmarshal(ev.JSON(), &obj)
	obj["content"] = msg("tampered")
	tampered, _ := json.Marshal(obj)
	if _, err := sendTxn(t, c, a, tampered); err != nil {
		t.Fatalf("transaction: %v", err)
	}

	// 10,000 PDUs in one transaction: refused whole.
	many := make([]json.RawMessage, 10000)
	for i := range many {
		many[i] = json.RawMessage(`{}`)
	}
	_, err := sendTxn(t, c, a, many...)
	if !federation.IsStatus(err, 400) {
		t.Fatalf("a transaction of 10,000 PDUs: %v", err)
	}

	// The room goes on: alice and bob still talk, and nothing of the
	// above is in anyone's timeline.
	send(alice, roomID, "still here")
	waitBodies(t, bob, roomID, "still here")
	send(bob, roomID, "me too")
	waitBodies(t, alice, roomID, "me too")
	for _, cl := range []*servertest.Client{alice, bob} {
		for _, body := range timelineBodies(cl, roomID) {
			switch body {
			case "forged alice", "eve was never here", "big", "tampered":
				t.Errorf("%s sees %q", cl.UserID, body)
			}
		}
	}
	pl := alice.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", nil)
	if users, _ := pl.JSON["users"].(map[string]any); users[mallory.UserID] != nil {
		t.Errorf("mallory's power levels took effect: %s", pl)
	}
	sameState(t, roomID, alice, bob)
}

// A request signed for another destination is refused.
func TestXMatrixForAnotherDestination(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	req, err := c.Federation().Client().NewRequest(context.Background(), "GET", b.ServerName(), "/_matrix/federation/v1/query/profile?user_id=@x:"+a.ServerName(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Signed for b, sent to a.
	u, _ := url.Parse(a.FederationURL + req.URL.RequestURI())
	req.URL, req.Host = u, u.Host
	resp, err := a.Federation().Client().HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("X-Matrix for %s sent to %s: %d", b.ServerName(), a.ServerName(), resp.StatusCode)
	}
	_ = fmt.Sprint()
}
