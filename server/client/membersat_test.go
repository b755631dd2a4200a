package client_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

// membersAt returns the state keys of GET /members?at=token, sorted.
func membersAt(t *testing.T, c *servertest.Client, roomID, token string) []string {
	t.Helper()
	r := c.Must(200, "GET", roomPath(roomID, "/members?at="+url.QueryEscape(token)), nil)
	var out []string
	for _, e := range r.JSON["chunk"].([]any) {
		out = append(out, e.(map[string]any)["state_key"].(string))
	}
	slices.Sort(out)
	return out
}

// prevBatch returns the timeline prev_batch of roomID in an initial sync
// with filter (none if "").
func prevBatch(t *testing.T, c *servertest.Client, roomID, filter string) string {
	t.Helper()
	path := "/_matrix/client/v3/sync?timeout=0"
	if filter != "" {
		path += "&filter=" + url.QueryEscape(filter)
	}
	var s struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					PrevBatch string `json:"prev_batch"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(c.Must(200, "GET", path, nil).Body, &s); err != nil {
		t.Fatal(err)
	}
	tok := s.Rooms.Join[roomID].Timeline.PrevBatch
	if tok == "" {
		t.Fatalf("no prev_batch for %s", roomID)
	}
	return tok
}

// GET /members?at= an initial sync's prev_batch: the members at that
// point, not who joined later (Complement's TestGetRoomMembersAtPoint,
// step for step, and with a timeline of one event). A timeline that holds
// the whole room has the sync's own position as prev_batch, as Synapse
// gives, not the point before the room's first event, where nobody was
// in it yet.
func TestMembersAtPrevBatch(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	for _, tc := range []struct{ name, filter string }{
		{"whole timeline", ""},
		{"timeline of one", `{"room":{"timeline":{"limit":1}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			carol.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
			send(t, alice, room, "Hello world!")
			at := prevBatch(t, alice, room, tc.filter)
			bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
			send(t, bob, room, "Hello back")
			want := []string{alice.UserID, carol.UserID}
			if got := membersAt(t, alice, room, at); !slices.Equal(got, want) {
				t.Errorf("members at %s: %v, want %v", at, got, want)
			}
		})
	}
}

// /members?at= is the room's history: a point before the room's first
// event is 404 M_NOT_FOUND, and a point the user may not see (before
// they joined a room whose history is for members since joining) is 403
// M_FORBIDDEN, as Synapse answers them.
func TestMembersAtUnseenPoint(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat",
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
	send(t, alice, roomID, "before bob")
	var sync struct {
		NextBatch string `json:"next_batch"`
	}
	r := alice.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0", nil)
	if err := json.Unmarshal(r.Body, &sync); err != nil {
		t.Fatal(err)
	}
	bob.Must(200, "POST", roomPath(roomID, "/join"), map[string]any{})
	if r := bob.Do("GET", roomPath(roomID, "/members?at="+url.QueryEscape(sync.NextBatch)), nil); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("bob's members before he joined a joined-visibility room: %d %s, want 403 M_FORBIDDEN", r.Status, r)
	}
	if got := membersAt(t, alice, roomID, sync.NextBatch); !slices.Equal(got, []string{alice.UserID}) {
		t.Errorf("alice's members at that point: %v", got)
	}
	if r := alice.Do("GET", roomPath(roomID, "/members?at=s1"), nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Errorf("members before the room's first event: %d %s, want 404 M_NOT_FOUND", r.Status, r)
	}
}
