package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testSigner(t testing.TB) Signer {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Signer{ServerName: "hs.test", KeyID: "ed25519:a_test", Key: key}
}

func str(s string) *string { return &s }

// chain builds create → creator join → power levels → join rules in
// version v, each allowed against the state before it.
func chain(t *testing.T, v string, s Signer) (state map[StateKey]*Event, last *Event) {
	t.Helper()
	const alice = "@alice:hs.test"
	state = map[StateKey]*Event{}
	var prev []string
	var depth int64
	add := func(p *Proto) *Event {
		t.Helper()
		p.Version, p.Sender, p.PrevEvents, p.Depth = v, alice, prev, depth+1
		if p.Type != "m.room.create" {
			p.RoomID = state[StateKey{"m.room.create", ""}].RoomID()
		}
		var authState []*Event
		for _, e := range state {
			authState = append(authState, e)
		}
		ev, err := Build(p, authState, s, time.Now())
		if err != nil {
			t.Fatalf("v%s: build %s: %v", v, p.Type, err)
		}
		if err := Allowed(ev, authState); err != nil {
			t.Fatalf("v%s: %s not allowed: %v", v, p.Type, err)
		}
		prev, depth = []string{ev.ID()}, ev.Depth()
		if ev.IsState() {
			state[StateKey{ev.Type(), *ev.StateKey()}] = ev
		}
		return ev
	}
	createContent := `{"room_version":"` + v + `"}`
	if !DomainlessRoomIDs(v) && v != "11" {
		createContent = `{"room_version":"` + v + `","creator":"` + alice + `"}`
	}
	create := &Proto{Type: "m.room.create", StateKey: str(""), Content: json.RawMessage(createContent)}
	if !DomainlessRoomIDs(v) {
		create.RoomID = "!room:hs.test"
	}
	add(create)
	add(&Proto{Type: "m.room.member", StateKey: str(alice), Content: json.RawMessage(`{"membership":"join"}`)})
	pl := `{"users":{"` + alice + `":100}}`
	if PrivilegedCreators(v) {
		pl = `{"users":{}}`
	}
	add(&Proto{Type: "m.room.power_levels", StateKey: str(""), Content: json.RawMessage(pl)})
	last = add(&Proto{Type: "m.room.join_rules", StateKey: str(""), Content: json.RawMessage(`{"join_rule":"invite"}`)})
	return state, last
}

// Every supported room version builds a room whose events pass the auth
// rules, and refuses a message from a stranger.
func TestBuildAndAuthEveryVersion(t *testing.T) {
	s := testSigner(t)
	for _, v := range SupportedVersions() {
		t.Run("v"+v, func(t *testing.T) {
			state, last := chain(t, v, s)
			create := state[StateKey{"m.room.create", ""}]
			roomID := create.RoomID()
			if DomainlessRoomIDs(v) {
				if roomID != "!"+create.ID()[1:] || strings.Contains(roomID, ":") {
					t.Fatalf("v%s room ID %q from create event %q", v, roomID, create.ID())
				}
			}
			var authState []*Event
			for _, e := range state {
				authState = append(authState, e)
			}
			stranger := &Proto{Version: v, RoomID: roomID, Sender: "@mallory:evil.test", Type: "m.room.message",
				Content: json.RawMessage(`{"body":"hi","msgtype":"m.text"}`), PrevEvents: []string{last.ID()}, Depth: last.Depth() + 1}
			ev, err := Build(stranger, authState, s, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := Allowed(ev, authState); !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("stranger's message: %v", err)
			}
			// The stored form parses back to the same event.
			back, err := Parse(v, last.JSON(), false)
			if err != nil || back.ID() != last.ID() || back.RoomID() != roomID {
				t.Fatalf("parse back: %v %v", back, err)
			}
			if _, err := ParseUntrusted(v, last.JSON()); err != nil {
				t.Fatalf("untrusted parse of our own event: %v", err)
			}
		})
	}
}

func TestUnknownVersion(t *testing.T) {
	if Known("13") || !Known("1") || Known("") {
		t.Fatal("version table")
	}
	if _, err := Build(&Proto{Version: "99"}, nil, testSigner(t), time.Now()); err == nil || !strings.Contains(err.Error(), "M_UNSUPPORTED_ROOM_VERSION") {
		t.Fatalf("unknown version: %v", err)
	}
}
