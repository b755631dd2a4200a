package syncapi_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

func typingUsers(r *servertest.Response, roomID string) ([]any, bool) {
	jr := section(r, "join", roomID)
	eph, _ := jr["ephemeral"].(map[string]any)
	evs, _ := eph["events"].([]any)
	for _, e := range evs {
		if e.(map[string]any)["type"] == "m.typing" {
			return e.(map[string]any)["content"].(map[string]any)["user_ids"].([]any), true
		}
	}
	return nil, false
}

// Spec: "Typing Notifications": typing wakes the other members' syncs,
// stops on request, and expires by itself.
func TestTyping(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	typing := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/typing/"
	next := syncOnce(t, bob, "", 0, "").Str("next_batch")

	got := make(chan *servertest.Response)
	go func() { got <- syncOnce(t, bob, next, 30000, "") }()
	alice.Must(200, "PUT", typing+"@alice:localhost", map[string]any{"typing": true, "timeout": 300})
	r := <-got
	if users, ok := typingUsers(r, room); !ok || len(users) != 1 || users[0] != "@alice:localhost" {
		t.Fatalf("typing in sync: %s", r)
	}
	// The 300 ms timeout ends it without another request; the waiting
	// sync sees the empty list.
	r = syncOnce(t, bob, r.Str("next_batch"), 30000, "")
	if users, ok := typingUsers(r, room); !ok || len(users) != 0 {
		t.Fatalf("typing after expiry: %s", r)
	}
	// Stopping explicitly.
	alice.Must(200, "PUT", typing+"@alice:localhost", map[string]any{"typing": true, "timeout": 30000})
	r = syncOnce(t, bob, r.Str("next_batch"), 30000, "")
	alice.Must(200, "PUT", typing+"@alice:localhost", map[string]any{"typing": false})
	r = syncOnce(t, bob, r.Str("next_batch"), 30000, "")
	if users, ok := typingUsers(r, room); !ok || len(users) != 0 {
		t.Fatalf("typing after stop: %s", r)
	}
	for _, tc := range []struct {
		c    *servertest.Client
		user string
		body map[string]any
		want int
	}{
		{bob, "@alice:localhost", map[string]any{"typing": true}, 403},   // for someone else
		{carol, "@carol:localhost", map[string]any{"typing": true}, 403}, // not in the room
		{alice, "@alice:localhost", map[string]any{}, 400},               // typing missing
	} {
		if r := tc.c.Do("PUT", typing+tc.user, tc.body); r.Status != tc.want {
			t.Errorf("PUT typing %s: %s", tc.user, r)
		}
	}
}

// A sync from a token taken before anyone typed still sees typing stop
// (Complement TestTyping/Typing_can_be_explicitly_stopped).
func TestTypingStopFromOldToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	token := syncOnce(t, bob, "", 0, "").Str("next_batch")
	typing := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/typing/@alice:localhost"
	alice.Must(200, "PUT", typing, map[string]any{"typing": true, "timeout": 10000})
	alice.Must(200, "PUT", typing, map[string]any{"typing": false})
	if users, ok := typingUsers(syncOnce(t, bob, token, 0, ""), room); !ok || len(users) != 0 {
		t.Fatal("typing stop not seen from a token older than the typing")
	}
}
