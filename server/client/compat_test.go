package client_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

// Behaviour clients and Complement rely on, beyond the bare spec text.
func TestClientCompatibility(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "topic": "Garden"})
	pre := send(t, alice, room, "before bob")
	next := bob.Must(200, "GET", "/_matrix/client/v3/sync", nil).Str("next_batch")
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{"foo": "bar"})
	post := send(t, alice, room, "after bob")

	// Rich topic alongside the plain one (Complement TestRoomCreate).
	topic := bob.Must(200, "GET", roomPath(room, "/state/m.room.topic/"), nil)
	if topic.Str("topic") != "Garden" || topic.JSON["m.topic"] == nil {
		t.Errorf("topic: %s", topic)
	}
	// A join's extra body fields reach the member event (TestRoomMembers).
	if m := stateMap(t, alice, room)["m.room.member|@bob:localhost"]; m["foo"] != "bar" || m["membership"] != "join" {
		t.Errorf("join with custom content: %v", m)
	}
	// unsigned.membership: the viewer's membership at each event (TestMembershipOnEvents).
	chunk := bob.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=50"), nil).JSON["chunk"].([]any)
	for _, e := range chunk {
		ev := e.(map[string]any)
		got := ev["unsigned"].(map[string]any)["membership"]
		want := "leave"
		if ev["event_id"] == post || ev["type"] == "m.room.member" && ev["state_key"] == "@bob:localhost" {
			want = "join"
		}
		if got != want {
			t.Errorf("unsigned.membership of %v %v: %v, want %v", ev["type"], ev["event_id"], got, want)
		}
	}
	// /messages pages from a sync token, and dir defaults to f (TestSendAndFetchMessage).
	r := bob.Must(200, "GET", roomPath(room, "/messages?from="+url.QueryEscape(next)), nil)
	var ids []string
	for _, e := range r.JSON["chunk"].([]any) {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	if len(ids) != 2 || ids[1] != post {
		t.Errorf("forward from a sync token: %v", ids)
	}
	r = bob.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=1&from="+url.QueryEscape(next)), nil)
	if c := r.JSON["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["event_id"] != pre {
		t.Errorf("backward from a sync token: %s", r)
	}
	// /members?at: as of a sync token (TestGetRoomMembersAtPoint).
	r = alice.Must(200, "GET", roomPath(room, "/members?at="+url.QueryEscape(next)), nil)
	if n := len(r.JSON["chunk"].([]any)); n != 1 {
		t.Errorf("members at a token before bob joined: %d", n)
	}
	// joined_members: keys present even when unset, members only (TestRoomState).
	jm := alice.Must(200, "GET", roomPath(room, "/joined_members"), nil).JSON["joined"].(map[string]any)
	if entry, ok := jm["@bob:localhost"].(map[string]any); !ok || entry["avatar_url"] != nil || len(entry) != 2 {
		t.Errorf("joined_members entry: %v", jm)
	}
	bob.Must(200, "POST", roomPath(room, "/leave"), map[string]any{})
	if r := bob.Do("GET", roomPath(room, "/joined_members"), nil); r.Status != 403 {
		t.Errorf("joined_members after leaving: %s", r)
	}
	// Forgotten rooms are gone (TestRoomForget); strangers get 404 on /event (TestFetchEventNonWorldReadable).
	bob.Must(200, "POST", roomPath(room, "/forget"), nil)
	if r := bob.Do("GET", roomPath(room, "/messages?dir=b"), nil); r.Status != 403 {
		t.Errorf("messages of a forgotten room: %s", r)
	}
	private := createRoom(t, alice, map[string]any{})
	secret := send(t, alice, private, "secret")
	if r := bob.Do("GET", roomPath(private, "/event/"+url.PathEscape(secret)), nil); r.Status != 404 {
		t.Errorf("stranger GET /event: %s", r)
	}
	// Any avatar URL is stored as given (TestAvatarUrlUpdate).
	alice.Must(200, "PUT", "/_matrix/client/v3/profile/@alice:localhost/avatar_url", map[string]any{"avatar_url": "https://example.org/a.png"})
}
