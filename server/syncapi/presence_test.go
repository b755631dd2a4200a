package syncapi_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

func presenceOf(r *servertest.Response, userID string) map[string]any {
	p, _ := r.JSON["presence"].(map[string]any)
	evs, _ := p["events"].([]any)
	for _, e := range evs {
		if e.(map[string]any)["sender"] == userID {
			return e.(map[string]any)["content"].(map[string]any)
		}
	}
	return nil
}

// Spec: "Presence": syncing makes you online; a status reaches the users
// you share a room with, and only them.
func TestPresence(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	syncOnce(t, alice, "", 0, "")
	next := syncOnce(t, bob, "", 0, "").Str("next_batch")

	got := make(chan *servertest.Response)
	go func() { got <- syncOnce(t, bob, next, 30000, "") }()
	alice.Must(200, "PUT", "/_matrix/client/v3/presence/@alice:localhost/status", map[string]any{"presence": "unavailable", "status_msg": "cooking"})
	r := <-got
	if p := presenceOf(r, "@alice:localhost"); p == nil || p["presence"] != "unavailable" || p["status_msg"] != "cooking" {
		t.Fatalf("presence in bob's sync: %s", r)
	}
	if p := bob.Must(200, "GET", "/_matrix/client/v3/presence/@alice:localhost/status", nil); p.Str("presence") != "unavailable" {
		t.Fatalf("GET presence: %s", p)
	}
	// carol shares no room with alice: no presence, and GET is refused.
	if r := syncOnce(t, carol, "", 0, ""); presenceOf(r, "@alice:localhost") != nil {
		t.Fatalf("carol sees alice's presence: %s", r)
	}
	if r := carol.Do("GET", "/_matrix/client/v3/presence/@alice:localhost/status", nil); r.Status != 403 {
		t.Fatalf("carol GET alice's presence: %s", r)
	}
	for _, tc := range []struct {
		path string
		body map[string]any
		want int
	}{
		{"/_matrix/client/v3/presence/@bob:localhost/status", map[string]any{"presence": "online"}, 403},
		{"/_matrix/client/v3/presence/@alice:localhost/status", map[string]any{"presence": "dancing"}, 400},
	} {
		if r := alice.Do("PUT", tc.path, tc.body); r.Status != tc.want {
			t.Errorf("PUT %s: %s", tc.path, r)
		}
	}
}

// An operator may turn presence off: everyone shows offline and sync
// carries none.
func TestPresenceOff(t *testing.T) {
	s := servertest.Start(t, servertest.Options{NoPresence: true})
	alice := s.Register(t, "alice", "pw")
	alice.Must(200, "PUT", "/_matrix/client/v3/presence/@alice:localhost/status", map[string]any{"presence": "online"})
	if p := alice.Must(200, "GET", "/_matrix/client/v3/presence/@alice:localhost/status", nil); p.Str("presence") != "offline" {
		t.Fatalf("presence while off: %s", p)
	}
	if r := syncOnce(t, alice, "", 0, ""); r.JSON["presence"] != nil {
		t.Fatalf("sync carries presence while off: %s", r)
	}
}

// Joining a room brings the presence of its members, and theirs of the
// joiner, though nobody's presence changed (Complement TestSync "Newly
// joined room includes presence in incremental sync").
func TestPresenceOfNewRoomPeers(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	aliceNext := syncOnce(t, alice, "", 0, "").Str("next_batch")
	bobNext := syncOnce(t, bob, "", 0, "").Str("next_batch")
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	if r := syncOnce(t, bob, bobNext, 10000, "&set_presence=offline"); presenceOf(r, "@alice:localhost") == nil {
		t.Fatalf("bob's sync after joining lacks alice's presence: %s", r)
	}
	if r := syncOnce(t, alice, aliceNext, 10000, "&set_presence=offline"); presenceOf(r, "@bob:localhost") == nil {
		t.Fatalf("alice's sync after bob joined lacks his presence: %s", r)
	}
}
