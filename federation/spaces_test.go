package federation_test

import (
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

// TestSpaceWithRemoteChildren: a space on A lists a space that lives on
// B. A's /hierarchy asks B for the rooms A is not in (client-server
// "Spaces": "federation is used to fill in the details"), shows alice
// what she may see of them (public rooms and spaces, not the invite-only
// den), follows them to B's grandchildren, and leaves them out when B
// cannot be reached.
func TestSpaceWithRemoteChildren(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "password-alice")
	bob := b.Register(t, "bob", "password-bob")
	space := map[string]any{"type": "m.space"}

	bobSpace := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Bob's space", "creation_content": space})
	lounge := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Lounge"})
	den := createRoom(t, bob, map[string]any{"preset": "private_chat", "name": "Den"})
	sub := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Sub", "creation_content": space})
	attic := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Attic"})
	family := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Family", "creation_content": space})
	kitchen := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Kitchen"})
	addChild := func(c *servertest.Client, parent, child, server, order string) {
		t.Helper()
		c.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(parent)+"/state/m.space.child/"+url.PathEscape(child),
			map[string]any{"via": []string{server}, "order": order})
	}
	addChild(bob, bobSpace, lounge, b.ServerName(), "a")
	addChild(bob, bobSpace, den, b.ServerName(), "b")
	addChild(bob, bobSpace, sub, b.ServerName(), "c")
	addChild(bob, sub, attic, b.ServerName(), "a")
	addChild(alice, family, kitchen, a.ServerName(), "a")
	addChild(alice, family, bobSpace, b.ServerName(), "b")

	hierarchy := func(query string) ([]string, map[string]string) {
		t.Helper()
		r := alice.Must(200, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(family)+"/hierarchy"+query, nil)
		var ids []string
		names := map[string]string{}
		rooms, _ := r.JSON["rooms"].([]any)
		for _, x := range rooms {
			m, _ := x.(map[string]any)
			id, _ := m["room_id"].(string)
			name, _ := m["name"].(string)
			ids, names[id] = append(ids, id), name
		}
		return ids, names
	}

	ids, names := hierarchy("")
	if want := []string{family, kitchen, bobSpace, lounge, sub, attic}; !slices.Equal(ids, want) {
		t.Fatalf("hierarchy: %v, want %v (den %s must be left out)", ids, want, den)
	}
	if names[bobSpace] != "Bob's space" || names[lounge] != "Lounge" || names[attic] != "Attic" {
		t.Fatalf("remote rooms' names: %v", names)
	}
	if ids, _ := hierarchy("?max_depth=1"); !slices.Equal(ids, []string{family, kitchen, bobSpace}) {
		t.Fatalf("hierarchy to depth 1: %v", ids)
	}
	if ids, _ := hierarchy("?limit=4"); !slices.Equal(ids, []string{family, kitchen, bobSpace, lounge}) {
		t.Fatalf("first page of 4: %v", ids)
	}

	a.Partition(b)
	if ids, _ := hierarchy(""); !slices.Equal(ids, []string{family, kitchen}) {
		t.Fatalf("hierarchy with B unreachable: %v", ids)
	}
}

// A room this server is not in is summarised as its server describes it
// (federation /hierarchy), through the via the client names or an
// alias's servers; one the user may not see is 404 all the same.
func TestRemoteRoomSummary(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "password-alice")
	bob := b.Register(t, "bob", "password-bob")
	lounge := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Lounge", "room_alias_name": "lounge"})
	den := createRoom(t, bob, map[string]any{"preset": "private_chat", "name": "Den"})

	summary := "/_matrix/client/v1/room_summary/"
	r := alice.Must(200, "GET", summary+url.PathEscape(lounge)+"?via="+url.QueryEscape(b.ServerName()), nil)
	if r.Str("room_id") != lounge || r.Str("name") != "Lounge" || r.Str("join_rule") != "public" || r.JSON["membership"] != nil {
		t.Fatalf("remote summary by ID and via: %s", r)
	}
	if r := alice.Must(200, "GET", summary+url.PathEscape("#lounge:"+b.ServerName()), nil); r.Str("room_id") != lounge {
		t.Fatalf("remote summary by alias: %s", r)
	}
	wantMatrixErr(t, "B's private room", alice.Do("GET", summary+url.PathEscape(den)+"?via="+url.QueryEscape(b.ServerName()), nil), 404, "M_NOT_FOUND")
	wantMatrixErr(t, "no via", alice.Do("GET", summary+url.PathEscape(lounge), nil), 404, "M_NOT_FOUND")
}
