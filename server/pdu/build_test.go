package pdu

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Build's own steps give, byte for byte, the event the library's
// EventBuilder.Build gives, with the same event ID, in every room version
// with hashed event IDs: canonical JSON of awkward content, state and
// message events, redactions, the v12 create event, refusals.
func TestBuildMatchesLibrary(t *testing.T) {
	s := testSigner(t)
	now := time.UnixMilli(1_700_000_000_123)
	contents := []string{
		`{"body":"hi","msgtype":"m.text"}`,
		`{ "msgtype" : "m.text", "body" : "<b>&amp;</b> \u00e9\u0000\t\n\"\\\/ é 😀 \ud83d\ude00", "z":{"b":[3,{"y":1,"x":2}],"a":null}, "n": -0, "big": 9007199254740991, "neg": -9007199254740991}`,
		`{"body":"` + strings.Repeat("x", 1000) + `","msgtype":"m.text","m.relates_to":{"rel_type":"m.thread","event_id":"$abc"}}`,
		`{"float":1.5}`,
		`{"exp":1e3}`,
		`{"huge":9007199254740992}`,
		`{"body":"` + strings.Repeat("y", 70000) + `"}`,
		`{}`,
		`{"origin":"evil.test","type":"x","state_key":"y","hashes":{"sha256":"x"},"signatures":{"a":{"b":"c"}},"unsigned":{"age":1},"z":{"origin":{"type":{"state_key":1}}}}`,
	}
	refused := 0
	for _, v := range SupportedVersions() {
		impl, _ := version(v)
		if impl.EventFormat() != gmsl.EventFormatV2 {
			continue
		}
		state, last := chain(t, v, s)
		var authState []*Event
		for _, e := range state {
			authState = append(authState, e)
		}
		roomID := last.RoomID()
		const alice = "@alice:hs.test"
		protos := []*Proto{
			{Type: "m.room.member", StateKey: str(alice), Content: json.RawMessage(`{"membership":"join","displayname":"Ålice <3"}`)},
			{Type: "m.room.topic", StateKey: str(""), Content: json.RawMessage(`{"topic":"t"}`)},
			{Type: "m.custom", StateKey: str(`k"origin":`), Content: json.RawMessage(`{"origin":{"state_key":"type"},"type":{"origin":1}}`)},
			{Type: `t"state_key":"type":`, Content: json.RawMessage(`{"state_key":{"signatures":1}}`)},
			{Type: "m.room.redaction", Redacts: last.ID(), Content: json.RawMessage(`{"redacts":"` + last.ID() + `","reason":"r"}`)},
			{Type: "m.room.create", StateKey: str(""), Content: json.RawMessage(`{"room_version":"` + v + `","creator":"` + alice + `"}`)},
		}
		for _, c := range contents {
			protos = append(protos, &Proto{Type: "m.room.message", Content: json.RawMessage(c)})
		}
		for i, p := range protos {
			p.Version, p.Sender, p.PrevEvents, p.Depth = v, alice, []string{last.ID()}, last.Depth()+1
			if p.Type != "m.room.create" || !DomainlessRoomIDs(v) {
				p.RoomID = roomID
			}
			auth := authState
			if p.Type == "m.room.create" {
				auth, p.PrevEvents, p.Depth = nil, nil, 1
			}
			provider, err := authProvider(auth)
			if err != nil {
				t.Fatal(err)
			}
			_, b1, err := builder(p, provider)
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := b1.Build(now, spec.ServerName(s.ServerName), gmsl.KeyID(s.KeyID), s.Key)
			got, err := Build(p, auth, s, now)
			if (wantErr == nil) != (err == nil) {
				t.Fatalf("v%s proto %d: library %v, ours %v", v, i, wantErr, err)
			}
			if err != nil {
				var ve gmsl.EventValidationError
				libTooLarge := errors.As(wantErr, &ve) && ve.Code == gmsl.EventValidationTooLarge
				if errors.Is(err, ErrTooLarge) != libTooLarge || (!libTooLarge && !IsBadContent(err)) {
					t.Fatalf("v%s proto %d: library %v, ours %v", v, i, wantErr, err)
				}
				refused++
				continue
			}
			if !bytes.Equal(got.JSON(), want.JSON()) {
				t.Fatalf("v%s proto %d:\nours    %s\nlibrary %s", v, i, got.JSON(), want.JSON())
			}
			if got.ID() != want.EventID() || got.RoomID() != want.RoomID().String() {
				t.Fatalf("v%s proto %d: ID %s, library %s", v, i, got.ID(), want.EventID())
			}
			// A fresh parse computes the ID from the JSON alone.
			if back, err := Parse(v, got.JSON(), false); err != nil || back.ID() != got.ID() {
				t.Fatalf("v%s proto %d: parsed back %v, %v", v, i, back, err)
			}
			if _, err := ParseUntrusted(v, got.JSON()); err != nil {
				t.Fatalf("v%s proto %d: untrusted parse: %v", v, i, err)
			}
		}
	}
	if refused < 10 {
		t.Fatalf("only %d refusals: the test no longer covers them", refused)
	}
}

// BenchmarkBuildMessage builds and authorises one short message, the work
// a send does between reading the room and writing the event.
func BenchmarkBuildMessage(b *testing.B) {
	s := Signer{ServerName: "hs.test", KeyID: "ed25519:a_test"}
	_, s.Key, _ = ed25519.GenerateKey(nil)
	t := &testing.T{}
	state, last := chain(t, DefaultVersion, s)
	var authState []*Event
	for _, e := range state {
		authState = append(authState, e)
	}
	p := &Proto{Version: DefaultVersion, RoomID: last.RoomID(), Sender: "@alice:hs.test", Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"message 1 from client 1"}`), PrevEvents: []string{last.ID()}, Depth: last.Depth() + 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildAllowed(p, authState, s, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
