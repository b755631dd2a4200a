package client_test

import (
	"fmt"
	"testing"

	"hearth/server/servertest"
)

// Spec: "Room Upgrades": a replacement room with the old one as
// predecessor, state and bans copied, a tombstone in the old room, and the
// old room silenced.
func TestRoomUpgrade(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	s.Register(t, "carol", "pw")
	old := createRoom(t, alice, map[string]any{"room_version": "10", "preset": "public_chat", "name": "Book club", "topic": "Chapter 3"})
	bob.Must(200, "POST", roomPath(old, "/join"), map[string]any{})
	alice.Must(200, "POST", roomPath(old, "/ban"), map[string]any{"user_id": "@carol:localhost"})

	if r := bob.Do("POST", roomPath(old, "/upgrade"), map[string]any{"new_version": "12"}); r.Status != 403 {
		t.Fatalf("powerless upgrade: %s", r)
	}
	if r := alice.Do("POST", roomPath(old, "/upgrade"), map[string]any{"new_version": "99"}); r.Status != 400 || r.Errcode() != "M_UNSUPPORTED_ROOM_VERSION" {
		t.Fatalf("upgrade to an unknown version: %s", r)
	}
	r := alice.Must(200, "POST", roomPath(old, "/upgrade"), map[string]any{"new_version": "12"})
	repl := r.Str("replacement_room")
	st := stateMap(t, alice, repl)
	if st["m.room.create|"]["room_version"] != "12" || st["m.room.create|"]["predecessor"].(map[string]any)["room_id"] != old {
		t.Fatalf("new create event: %v", st["m.room.create|"])
	}
	if st["m.room.name|"]["name"] != "Book club" || st["m.room.topic|"]["topic"] != "Chapter 3" || st["m.room.join_rules|"]["join_rule"] != "public" {
		t.Fatalf("state not copied: %v", st)
	}
	if st["m.room.member|@carol:localhost"]["membership"] != "ban" {
		t.Fatalf("ban not copied: %v", st["m.room.member|@carol:localhost"])
	}
	if users := st["m.room.power_levels|"]["users"].(map[string]any); users["@alice:localhost"] != nil {
		t.Fatalf("v12 power levels list the creator: %v", users)
	}
	oldState := stateMap(t, alice, old)
	if oldState["m.room.tombstone|"]["replacement_room"] != repl {
		t.Fatalf("tombstone: %v", oldState["m.room.tombstone|"])
	}
	if r := bob.Do("PUT", roomPath(old, "/send/m.room.message/late"), map[string]any{"body": "hello?"}); r.Status != 403 {
		t.Fatalf("ordinary member still speaks in the old room: %s", r)
	}
	bob.Must(200, "POST", roomPath(repl, "/join"), map[string]any{})
	send(t, bob, repl, "made it")
}

// Spec v1.16: an upgrade to room version 12 may name additional creators,
// who are in the new create event and, like the upgrader, not in the new
// power levels; other admins keep their level.
func TestUpgradeWithAdditionalCreators(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	charlie := s.Register(t, "charlie", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "11"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	charlie.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.power_levels/"), map[string]any{"users": map[string]int{
		"@alice:localhost": 100, "@bob:localhost": 100, "@charlie:localhost": 50}})
	if r := alice.Do("POST", roomPath(room, "/upgrade"), map[string]any{"new_version": "12", "additional_creators": []string{"bob"}}); r.Status != 400 {
		t.Fatalf("additional_creators that are not user IDs: %s", r)
	}
	newRoom := alice.Must(200, "POST", roomPath(room, "/upgrade"), map[string]any{"new_version": "12", "additional_creators": []string{"@bob:localhost"}}).Str("replacement_room")
	st := stateMap(t, alice, newRoom)
	if got := fmt.Sprint(st["m.room.create|"]["additional_creators"]); got != "[@bob:localhost]" {
		t.Errorf("additional_creators: %v", got)
	}
	if users := st["m.room.power_levels|"]["users"].(map[string]any); len(users) != 1 || users["@charlie:localhost"] != 50.0 {
		t.Errorf("new power levels' users: %v, want charlie alone at 50", users)
	}
}
