package syncapi_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

// Spec: "Ignoring Users": an ignored user's messages and invites are not
// sent; their state events still are.
func TestIgnoredUsers(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	mallory := s.Register(t, "mallory", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	mallory.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	next := syncOnce(t, alice, "", 0, "").Str("next_batch")
	alice.Must(200, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{"@mallory:localhost": map[string]any{}}})

	send(t, mallory, room, "spam")
	mallory.Must(200, "PUT", "/_matrix/client/v3/profile/@mallory:localhost/displayname", map[string]any{"displayname": "Mal"})
	kept := send(t, alice, room, "real message")
	spamRoom := createRoom(t, mallory, map[string]any{"invite": []string{"@alice:localhost"}})

	r := syncOnce(t, alice, next, 0, "")
	var types []string
	sawKept := false
	for _, e := range timelineEvents(section(r, "join", room)) {
		if e["sender"] == "@mallory:localhost" && e["state_key"] == nil {
			t.Fatalf("an ignored user's message was sent: %v", e)
		}
		types = append(types, e["type"].(string))
		sawKept = sawKept || e["event_id"] == kept
	}
	if !sawKept {
		t.Fatalf("alice's own message missing: %v", types)
	}
	memberSeen := false
	for _, e := range timelineEvents(section(r, "join", room)) {
		memberSeen = memberSeen || e["type"] == "m.room.member" && e["sender"] == "@mallory:localhost"
	}
	if !memberSeen {
		t.Fatal("an ignored user's state event (profile change) was dropped")
	}
	if section(r, "invite", spamRoom) != nil {
		t.Fatal("an invite from an ignored user was sent")
	}
}
