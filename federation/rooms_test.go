package federation_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
)

// timelineBodies returns the bodies of the m.room.message events of a
// room, oldest first, as a client sees them through /messages.
func timelineBodies(c *servertest.Client, roomID string) []string {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=100", nil)
	var out []string
	chunk, _ := r.JSON["chunk"].([]any)
	for i := len(chunk) - 1; i >= 0; i-- {
		ev, _ := chunk[i].(map[string]any)
		if ev["type"] != "m.room.message" {
			continue
		}
		content, _ := ev["content"].(map[string]any)
		body, _ := content["body"].(string)
		out = append(out, body)
	}
	return out
}

func send(c *servertest.Client, roomID, body string) string {
	r := c.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", url.PathEscape(roomID), servertest.UniqueName("t")),
		map[string]any{"msgtype": "m.text", "body": body})
	return r.Str("event_id")
}

func waitBodies(t *testing.T, c *servertest.Client, roomID string, want ...string) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		got := timelineBodies(c, roomID)
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				return false, fmt.Sprintf("%s sees %q, want %q among them", c.UserID, got, w)
			}
		}
		return true, ""
	})
}

func joinedMembers(c *servertest.Client, roomID string) map[string]any {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/joined_members", nil)
	m, _ := r.JSON["joined"].(map[string]any)
	return m
}

// A user of B joins a public room of A over federation; messages flow
// both ways and both servers agree on who is in the room.
func TestJoinRemoteRoomAndTalk(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")

	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat", "name": "Hearth"}).Str("room_id")
	send(alice, roomID, "before bob")

	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	if m := joinedMembers(bob, roomID); m[alice.UserID] == nil || m[bob.UserID] == nil {
		t.Fatalf("B's joined members after the join: %v", m)
	}
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		m := joinedMembers(alice, roomID)
		return m[bob.UserID] != nil, fmt.Sprintf("A's joined members: %v", m)
	})
	name := bob.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.name/", nil)
	if name.Str("name") != "Hearth" {
		t.Fatalf("room name on B: %s", name)
	}

	send(alice, roomID, "hello bob")
	waitBodies(t, bob, roomID, "hello bob")
	send(bob, roomID, "hello alice")
	waitBodies(t, alice, roomID, "hello alice")
	sameState(t, roomID, alice, bob)
}

// stateIDs returns a room's current state as a client sees it: type and
// state key → event ID.
func stateIDs(c *servertest.Client, roomID string) map[string]string {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state", nil)
	var evs []map[string]any
	_ = json.Unmarshal(r.Body, &evs)
	out := map[string]string{}
	for _, ev := range evs {
		out[fmt.Sprintf("%v|%v", ev["type"], ev["state_key"])] = fmt.Sprint(ev["event_id"])
	}
	return out
}

// sameState waits until every client sees the same current state.
func sameState(t *testing.T, roomID string, cs ...*servertest.Client) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		first := stateIDs(cs[0], roomID)
		for _, c := range cs[1:] {
			if got := stateIDs(c, roomID); !maps.Equal(first, got) {
				return false, fmt.Sprintf("%s sees state %v, %s sees %v", cs[0].UserID, first, c.UserID, got)
			}
		}
		return true, ""
	})
}

// Three servers: a user of C joins A's room through an alias B made,
// resolving it with B and joining through the servers B names; the
// room's messages reach all three.
func TestThreeServersJoinThroughAlias(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := c.Register(t, "carol", "pw-carol")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	alias := "#meet:" + b.ServerName()
	bob.Must(200, "PUT", "/_matrix/client/v3/directory/room/"+url.PathEscape(alias), map[string]any{"room_id": roomID})

	carol.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(alias), map[string]any{})
	send(carol, roomID, "hi from C")
	waitBodies(t, alice, roomID, "hi from C")
	waitBodies(t, bob, roomID, "hi from C")
	send(alice, roomID, "hi from A")
	waitBodies(t, carol, roomID, "hi from A")
	sameState(t, roomID, alice, bob, carol)
}

// A user who joins a room late reads its earlier history: /messages
// fetches it from the room's other servers (backfill), as far as history
// visibility lets them see.
func TestBackfillHistory(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	var early []string
	for i := range 30 {
		early = append(early, fmt.Sprintf("early %d", i))
		send(alice, roomID, early[i])
	}
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	// Page back to the start, as a client does.
	var got []string
	from := ""
	for range 20 {
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/messages?dir=b&limit=10"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := bob.Must(200, "GET", path, nil)
		chunk, _ := r.JSON["chunk"].([]any)
		for _, c := range chunk {
			ev, _ := c.(map[string]any)
			if content, _ := ev["content"].(map[string]any); ev["type"] == "m.room.message" {
				got = append(got, fmt.Sprint(content["body"]))
			}
		}
		if from = r.Str("end"); from == "" {
			break
		}
	}
	slices.Reverse(got)
	if !slices.Equal(got, early) {
		t.Fatalf("bob's history: %q", got)
	}
}
