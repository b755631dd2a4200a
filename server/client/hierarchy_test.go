package client_test

import (
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

func hierarchyIDs(r *servertest.Response) []string {
	var ids []string
	for _, room := range r.JSON["rooms"].([]any) {
		ids = append(ids, room.(map[string]any)["room_id"].(string))
	}
	return ids
}

// Spec: GET /_matrix/client/v1/rooms/{roomId}/hierarchy over the rooms
// this server knows: children in order, only what the user may see,
// max_depth, suggested_only and paging.
func TestSpaceHierarchy(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	space := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Family", "creation_content": map[string]any{"type": "m.space"}})
	kitchen := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Kitchen"})
	garden := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Garden", "creation_content": map[string]any{"type": "m.space"}})
	secret := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Presents"})
	shed := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Shed"})
	pantry := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Pantry"})
	child := func(parent, room, order string, suggested bool) {
		alice.Must(200, "PUT", roomPath(parent, "/state/m.space.child/"+room), map[string]any{"via": []string{"localhost"}, "order": order, "suggested": suggested})
	}
	child(space, garden, "b", false)
	child(space, kitchen, "a", true)
	child(space, secret, "c", true)
	child(garden, shed, "", false) // garden is a space within the space
	// Only spaces have children: the kitchen's m.space.child is not
	// followed, as Synapse does not follow it.
	child(kitchen, pantry, "", false)
	// A child without via is no child.
	alice.Must(200, "PUT", roomPath(space, "/state/m.space.child/!gone:localhost"), map[string]any{})

	r := bob.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy", nil)
	ids := hierarchyIDs(r)
	want := []string{space, kitchen, garden, shed} // the invite-only room is hidden from bob
	if len(ids) != len(want) {
		t.Fatalf("hierarchy for bob: %v", ids)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("hierarchy order: %v, want %v", ids, want)
		}
	}
	root := r.JSON["rooms"].([]any)[0].(map[string]any)
	if root["room_type"] != "m.space" || root["name"] != "Family" || len(root["children_state"].([]any)) != 3 {
		t.Fatalf("root entry: %v", root)
	}
	// Depth first, as the spec pages it: the garden's shed before the
	// space's third child.
	if ids := hierarchyIDs(alice.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy", nil)); !slices.Equal(ids, []string{space, kitchen, garden, shed, secret}) {
		t.Fatalf("hierarchy for alice, who is in every room: %v, want %v", ids, []string{space, kitchen, garden, shed, secret})
	}
	if ids := hierarchyIDs(bob.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy?max_depth=1", nil)); len(ids) != 3 {
		t.Fatalf("max_depth=1: %v", ids)
	}
	sug := alice.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy?suggested_only=true", nil)
	if ids := hierarchyIDs(sug); len(ids) != 3 {
		t.Fatalf("suggested_only: %v", ids)
	}
	// ... and the links shown are the suggested ones.
	if links := sug.JSON["rooms"].([]any)[0].(map[string]any)["children_state"].([]any); len(links) != 2 {
		t.Fatalf("suggested_only: the space shows %d links, want its 2 suggested: %v", len(links), links)
	}
	// Pages of two cover the walk once.
	var all []string
	from := ""
	for range 5 {
		path := "/_matrix/client/v1/rooms/" + space + "/hierarchy?limit=2"
		if from != "" {
			path += "&from=" + from
		}
		r := bob.Must(200, "GET", path, nil)
		all = append(all, hierarchyIDs(r)...)
		if from = r.Str("next_batch"); from == "" {
			break
		}
	}
	if len(all) != 4 {
		t.Fatalf("paged hierarchy: %v", all)
	}
	if r := bob.Do("GET", "/_matrix/client/v1/rooms/"+secret+"/hierarchy", nil); r.Status != 403 {
		t.Fatalf("hierarchy of a room bob may not see: %s", r)
	}
	if r := bob.Do("GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy?from=zz", nil); r.Status != 400 {
		t.Fatalf("bad token: %s", r)
	}
}

// Spec v1.15: GET /room_summary/{roomIdOrAlias} describes a room to whom
// may see it: its directory entry, type, version, encryption, the rooms
// its restricted rule allows and the caller's membership; a room they may
// not see is 404, as one that does not exist.
func TestRoomSummary(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	space := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Family", "room_alias_name": "family", "creation_content": map[string]any{"type": "m.space"}})
	restricted := createRoom(t, alice, map[string]any{"room_version": "10", "name": "Members only", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}},
		}},
		map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
	}})
	secret := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Presents"})

	r := bob.Must(200, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape("#family:localhost"), nil)
	if r.Str("room_id") != space || r.Str("room_type") != "m.space" || r.Str("join_rule") != "public" || r.Str("name") != "Family" ||
		r.Str("room_version") == "" || r.JSON["membership"] != nil || r.JSON["num_joined_members"] != 1.0 {
		t.Fatalf("summary of the space, by alias, for bob: %s", r)
	}
	wantMatrixErr(t, "the restricted room before bob is in the space", bob.Do("GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(restricted), nil), 404, "M_NOT_FOUND")
	bob.Must(200, "POST", roomPath(space, "/join"), map[string]any{})
	r = bob.Must(200, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(restricted), nil)
	allowed, _ := r.JSON["allowed_room_ids"].([]any)
	if r.Str("join_rule") != "restricted" || len(allowed) != 1 || allowed[0] != space || r.Str("room_version") != "10" ||
		r.Str("encryption") != "m.megolm.v1.aes-sha2" {
		t.Fatalf("summary of the restricted room: %s", r)
	}
	if r := alice.Must(200, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(secret), nil); r.Str("membership") != "join" {
		t.Fatalf("alice's own private room: %s", r)
	}
	wantMatrixErr(t, "the private room, for bob", bob.Do("GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(secret), nil), 404, "M_NOT_FOUND")
	wantMatrixErr(t, "a room nobody knows", bob.Do("GET", "/_matrix/client/v1/room_summary/"+url.PathEscape("!nowhere:localhost"), nil), 404, "M_NOT_FOUND")
}
