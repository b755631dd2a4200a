package pdu

import (
	"testing"
	"time"
)

// Untrusted bytes enter here: every PDU another server sends (in /send,
// send_join answers, backfill, /event), the signed block of a third-party
// invite, a room's third-party invite keys and a policy server's key.
// None may panic the server; an event that parses must answer for its ID,
// its room and its auth needs, and survive redaction.
func FuzzParseUntrusted(f *testing.F) {
	f.Add("12", []byte(`{"type":"m.room.message","room_id":"!a","sender":"@a:b","origin_server_ts":1,"depth":2,"prev_events":["$x"],"auth_events":["$y"],"content":{"body":"hi"},"hashes":{"sha256":"abc"},"signatures":{"b":{"ed25519:k":"c2ln"}}}`))
	f.Add("10", []byte(`{"type":"m.room.member","state_key":"@a:b","room_id":"!r:b","sender":"@a:b","origin_server_ts":1,"depth":1,"prev_events":[],"auth_events":[],"content":{"membership":"join","third_party_invite":{"signed":{"mxid":"@a:b","token":"t","signatures":{"id":{"ed25519:0":"x"}}}}},"hashes":{"sha256":"abc"},"signatures":{}}`))
	f.Add("1", []byte(`{"event_id":"$e:b","type":"m.room.create","state_key":"","room_id":"!r:b","sender":"@a:b","content":{"creator":"@a:b"},"prev_events":[],"auth_events":[],"depth":1}`))
	f.Add("12", []byte(`{"type":"m.room.create","state_key":"","sender":"@a:b","content":{"room_version":"12","additional_creators":["@c:d"]},"prev_events":[],"auth_events":[],"depth":1,"origin_server_ts":0}`))
	f.Add("12", []byte(`{"event_id" "":"","room_id":"!0:0","sender":"@0:0","prev_events":[]}`)) // broken JSON the library read
	f.Fuzz(func(t *testing.T, v string, js []byte) {
		if _, err := version(v); err != nil {
			return
		}
		ev, err := ParseUntrusted(v, js)
		if err != nil {
			return
		}
		id := ev.ID()
		_ = ev.RoomID()
		_ = AuthStateNeededFor(ev)
		// The ID is the JSON's: read again, and redacted, it is the same.
		again, err := ParseUntrusted(v, ev.JSON())
		if err != nil || again.ID() != id {
			t.Fatalf("v%s: %s is %s, read again %v (%v)", v, js, id, again, err)
		}
		if red, err := ev.Redact(); err == nil && red.ID() != id {
			t.Fatalf("v%s: %s is %s, redacted %s", v, js, id, red.ID())
		}
		_, _ = ev.Membership()
		_ = IsThirdPartyInvite(ev)
		_ = VerifyEventSignature(ev, "policy.example", PolicyKeyID, "AAAA")
		_, _ = Template(ev)
		_ = ThirdPartyInviteKeys(ev.Content())
		_, _ = VerifyThirdPartySigned(ev.Content(), ThirdPartyInviteKeys(ev.Content()))
	})
}

// A make_join (make_leave, make_knock) answer is another server's
// template, which we complete, sign and send back: whatever it holds, we
// build an event that answers for its fields, or refuse it.
func FuzzBuildFromTemplate(f *testing.F) {
	f.Add("12", []byte(`{"type":"m.room.member","state_key":"@a:b","room_id":"!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG","sender":"@a:b","origin_server_ts":1,"depth":2,"prev_events":["$x"],"auth_events":["$y"],"content":{"membership":"join"}}`))
	f.Add("10", []byte(`{"type":"m.room.member","state_key":"@a:b","room_id":"!r:b","sender":"@a:b","depth":1,"prev_events":[],"auth_events":[],"content":{"membership":"join"}}`))
	f.Add("12", []byte(`{"type":"m.room.member","state_key":"@a:b","room_id":"!a","sender":"@a:b","depth":1,"prev_events":[],"auth_events":[],"content":{"membership":"join"}}`))
	s := testSigner(f)
	f.Fuzz(func(t *testing.T, v string, template []byte) {
		if _, err := version(v); err != nil {
			return
		}
		ev, err := BuildFromTemplate(v, template, s, time.Unix(1, 0))
		if err != nil {
			return
		}
		_ = ev.ID()
		_ = ev.RoomID()
		_, _ = ev.Membership()
		_ = AuthStateNeededFor(ev)
	})
}

// additional_creators means something from room version 12 on; an older
// room's create event may hold anything under that name.
func TestOldCreateEventWithOddAdditionalCreators(t *testing.T) {
	s := testSigner(t)
	for _, c := range []struct {
		version string
		ok      bool
	}{{"10", true}, {"11", true}, {"12", false}} {
		content := mustJSON(t, map[string]any{"room_version": c.version, "additional_creators": 5})
		p := &Proto{Version: c.version, RoomID: "!r:" + s.ServerName, Sender: "@a:" + s.ServerName, Type: "m.room.create", StateKey: str(""), Content: content}
		if PrivilegedCreators(c.version) {
			p.RoomID = ""
		}
		ev, err := Build(p, nil, s, time.Now())
		if err != nil {
			if c.ok {
				t.Fatalf("v%s: build: %v", c.version, err)
			}
			continue // v12 refuses to build it at all
		}
		_, err = ParseUntrusted(c.version, ev.JSON())
		if (err == nil) != c.ok {
			t.Errorf("v%s: ParseUntrusted: %v, want accepted %v", c.version, err, c.ok)
		}
	}
}
