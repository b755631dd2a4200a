package federation_test

import (
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
)

// bob of B joins a restricted room on A through the space it allows,
// then changes his member event with a stray join_authorised_via_users_
// server (a client's leftover): his server leaves it out, since a join of
// someone already joined authorises nothing and A would look for a
// signature of "unused"'s server in vain. A takes the change.
func TestRestrictedRoomProfileChangeAcrossServers(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	space := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	roomID := createRestrictedRoom(t, alice, space, nil)
	via := "?server_name=" + url.QueryEscape(a.ServerName())
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(space)+via, map[string]any{})
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+via, map[string]any{})

	member := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/state/m.room.member/" + url.PathEscape(bob.UserID)
	bob.Must(200, "PUT", member, map[string]any{"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused"})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", member, nil)
		return r.Status == 200 && r.Str("displayname") == "Bobby", "bob's member event on A: " + r.String()
	})
}

// A restricted join goes only through the servers the client names:
// charlie asks B, whose only member (bob) may not invite, so B cannot
// authorise the join and it fails; naming A as well, it goes through A.
// (The room ID's own server is tried only when nothing else is known.)
func TestRestrictedJoinOnlyThroughNamedServers(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	charlie := c.Register(t, "charlie", "pw-charlie")
	space := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	roomID := createRestrictedRoom(t, alice, space, map[string]any{"power_level_content_override": map[string]any{"invite": 100}})
	join := func(c *servertest.Client, room string, servers ...*servertest.Server) *servertest.Response {
		q := url.Values{}
		for _, s := range servers {
			q.Add("server_name", s.ServerName())
		}
		return c.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape(room)+"?"+q.Encode(), map[string]any{})
	}
	for _, u := range []*servertest.Client{bob, charlie} {
		if r := join(u, space, a); r.Status != 200 {
			t.Fatalf("%s joining the space: %s", u.UserID, r)
		}
	}
	if r := join(bob, roomID, a); r.Status != 200 {
		t.Fatalf("bob joining the room: %s", r)
	}
	if r := join(charlie, roomID, b); r.Status == 200 {
		t.Fatalf("charlie joined through B, which cannot authorise it: %s", r)
	}
	if r := join(charlie, roomID, b, a); r.Status != 200 {
		t.Fatalf("charlie joining through B then A: %s", r)
	}

	// bob may invite now, but has left the space: B cannot tell whether
	// charlie is still in it (what it knew of the space is stale), so it
	// will not authorise his join, and A will.
	alice.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/",
		map[string]any{"invite": 100, "users": map[string]any{alice.UserID: 100, bob.UserID: 100}})
	charlie.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(space)+"/leave", map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := bob.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(charlie.UserID), nil)
		return r.Str("membership") == "leave", "charlie's leave not at B: " + r.String()
	})
	if r := join(charlie, roomID, b); r.Status == 200 {
		t.Fatalf("charlie joined through B, which no longer knows who is in the space: %s", r)
	}
	if r := join(charlie, roomID, b, a); r.Status != 200 {
		t.Fatalf("charlie joining again through B then A: %s", r)
	}
}

// A restricted room on B that A is in, with no member of A allowed to
// invite: bob of A, in the allowed space, joins through his own server,
// which cannot authorise it and so has B's member authorise it (a
// make_join and send_join to B, as a server outside the room would),
// and takes the authorised join in as one more event of the room.
func TestRestrictedJoinAuthorisedElsewhere(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := a.Register(t, "bob", "pw-bob")
	charlie := b.Register(t, "charlie", "pw-charlie")
	space := createRoom(t, charlie, map[string]any{"preset": "public_chat"})
	roomID := createRestrictedRoom(t, charlie, space, map[string]any{"preset": "public_chat"})
	room := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)
	charlie.Must(200, "POST", room+"/invite", map[string]any{"user_id": alice.UserID})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})
		return r.Status == 200, "alice accepting the invite: " + r.String()
	})
	if r := alice.Do("POST", room+"/invite", map[string]any{"user_id": bob.UserID}); r.Status != 403 {
		t.Fatalf("alice may not invite here: %s", r)
	}
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(space)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	for _, c := range []*servertest.Client{bob, charlie} {
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			r := c.Do("GET", room+"/state/m.room.member/"+url.PathEscape(bob.UserID), nil)
			return r.Str("membership") == "join" && r.Str("join_authorised_via_users_server") == charlie.UserID,
				c.UserID + " sees bob's member event as " + r.String()
		})
	}
}

// createRestrictedRoom has c create a room version 10 room that members
// of allowed may join, with body's further createRoom fields.
func createRestrictedRoom(t *testing.T, c *servertest.Client, allowed string, body map[string]any) string {
	t.Helper()
	req := map[string]any{"room_version": "10", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": allowed}},
		}},
	}}
	for k, v := range body {
		req[k] = v
	}
	return createRoom(t, c, req)
}
