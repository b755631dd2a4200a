package client_test

import (
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
	if ids := hierarchyIDs(alice.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy", nil)); len(ids) != 5 {
		t.Fatalf("hierarchy for alice, who is in every room: %v", ids)
	}
	if ids := hierarchyIDs(bob.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy?max_depth=1", nil)); len(ids) != 3 {
		t.Fatalf("max_depth=1: %v", ids)
	}
	if ids := hierarchyIDs(alice.Must(200, "GET", "/_matrix/client/v1/rooms/"+space+"/hierarchy?suggested_only=true", nil)); len(ids) != 3 {
		t.Fatalf("suggested_only: %v", ids)
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
