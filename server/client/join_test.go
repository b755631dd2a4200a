package client_test

import (
	"testing"

	"hearth/server/servertest"
)

// Spec: "Knocking on rooms" (room versions 7+): a knock is a member event
// the room's members can answer with an invite.
func TestKnock(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"room_version": "7", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	if r := bob.Do("POST", roomPath(room, "/join"), map[string]any{}); r.Status != 403 {
		t.Fatalf("join without invite in a knock room: %s", r)
	}
	if r := bob.Must(200, "POST", "/_matrix/client/v3/knock/"+room, map[string]any{"reason": "let me in"}); r.Str("room_id") != room {
		t.Fatalf("knock: %s", r)
	}
	if m := stateMap(t, alice, room)["m.room.member|@bob:localhost"]; m["membership"] != "knock" || m["reason"] != "let me in" {
		t.Fatalf("knock event: %v", m)
	}
	alice.Must(200, "POST", roomPath(room, "/invite"), map[string]any{"user_id": "@bob:localhost"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})

	// Version 6 has no knocking.
	old := createRoom(t, alice, map[string]any{"room_version": "6", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	if r := bob.Do("POST", "/_matrix/client/v3/knock/"+old, map[string]any{}); r.Status != 403 {
		t.Fatalf("knock in v6: %s", r)
	}
	if r := bob.Do("POST", "/_matrix/client/v3/knock/!unknown:localhost", map[string]any{}); r.Status != 404 {
		t.Fatalf("knock on an unknown room: %s", r)
	}
}

// Spec: "Restricted rooms" (room versions 8+): members of an allowed room
// may join without an invite, authorised by a local member who may invite.
func TestRestrictedJoin(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	space := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	room := createRoom(t, alice, map[string]any{"room_version": "10", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}},
		}},
	}})
	if r := bob.Do("POST", roomPath(room, "/join"), map[string]any{}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("join while not in the allowed room: %s", r)
	}
	bob.Must(200, "POST", roomPath(space, "/join"), map[string]any{})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	m := stateMap(t, alice, room)["m.room.member|@bob:localhost"]
	if m["membership"] != "join" || m["join_authorised_via_users_server"] != "@alice:localhost" {
		t.Fatalf("restricted join event: %v", m)
	}
	// Version 7 has no restricted join rule: the same rule admits no one.
	old := createRoom(t, alice, map[string]any{"room_version": "7", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}},
		}},
	}})
	if r := bob.Do("POST", roomPath(old, "/join"), map[string]any{}); r.Status != 403 {
		t.Fatalf("restricted join in v7: %s", r)
	}
}
