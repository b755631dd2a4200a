package client_test

import (
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

func timelineIDs(t *testing.T, c *servertest.Client, roomID string) []string {
	t.Helper()
	r := c.Must(200, "GET", roomPath(roomID, "/messages?dir=b&limit=200"), nil)
	var ids []string
	for _, e := range r.JSON["chunk"].([]any) {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	return ids
}

// Spec: "History visibility": what a member who joined late sees of the
// time before, for each setting, and what an outsider may read.
func TestHistoryVisibility(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	for _, tc := range []struct {
		visibility       string
		seesBeforeInvite bool // sent before bob was invited
		seesWhileInvited bool // sent after the invite, before the join
		outsiderReads    bool
	}{
		{"shared", true, true, false},
		{"invited", false, true, false},
		{"joined", false, false, false},
		{"world_readable", true, true, true},
	} {
		t.Run(tc.visibility, func(t *testing.T) {
			room := createRoom(t, alice, map[string]any{"initial_state": []any{
				map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": tc.visibility}},
			}})
			before := send(t, alice, room, "before the invite")
			alice.Must(200, "POST", roomPath(room, "/invite"), map[string]any{"user_id": "@bob:localhost"})
			invited := send(t, alice, room, "while bob is invited")
			bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
			after := send(t, alice, room, "after bob joined")

			ids := timelineIDs(t, bob, room)
			if slices.Contains(ids, before) != tc.seesBeforeInvite || slices.Contains(ids, invited) != tc.seesWhileInvited || !slices.Contains(ids, after) {
				t.Errorf("bob's timeline: before %v (want %v), invited %v (want %v), after %v",
					slices.Contains(ids, before), tc.seesBeforeInvite, slices.Contains(ids, invited), tc.seesWhileInvited, slices.Contains(ids, after))
			}
			r := bob.Do("GET", roomPath(room, "/event/"+url.PathEscape(before)), nil)
			if (r.Status == 200) != tc.seesBeforeInvite {
				t.Errorf("bob GET /event of an earlier message: %s", r)
			}
			for _, path := range []string{"/messages?dir=b", "/state", "/event/" + url.PathEscape(after)} {
				r := carol.Do("GET", roomPath(room, path), nil)
				if (r.Status == 200) != tc.outsiderReads {
					t.Errorf("outsider GET %s: %s", path, r)
				}
			}
		})
	}
}
