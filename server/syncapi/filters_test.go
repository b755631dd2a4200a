package syncapi_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"hearth/server/servertest"
)

// Spec: "Filtering": each section's filter applies to that section.
func TestSyncSectionFilters(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Filtered", "topic": "t"})
	other := createRoom(t, alice, map[string]any{})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	for range 12 {
		send(t, alice, room, "push state out of the timeline")
	}
	alice.Must(200, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/a.keep", map[string]any{"x": 1})
	alice.Must(200, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/b.drop", map[string]any{"x": 1})
	alice.Must(200, "PUT", "/_matrix/client/v3/user/@alice:localhost/rooms/"+url.PathEscape(room)+"/account_data/c.drop", map[string]any{"x": 1})
	alice.Must(200, "PUT", "/_matrix/client/v3/presence/@alice:localhost/status", map[string]any{"presence": "online"})
	syncOnce(t, bob, "", 0, "") // bob online too

	f, _ := json.Marshal(map[string]any{
		"account_data": map[string]any{"types": []string{"a.*"}},
		"presence":     map[string]any{"not_senders": []string{"@bob:localhost"}},
		"room": map[string]any{
			"not_rooms":    []string{other},
			"state":        map[string]any{"types": []string{"m.room.name"}},
			"account_data": map[string]any{"not_types": []string{"c.drop"}},
		},
	})
	r := syncOnce(t, alice, "", 0, "&filter="+url.QueryEscape(string(f)))
	var adTypes []string
	for _, e := range r.JSON["account_data"].(map[string]any)["events"].([]any) {
		adTypes = append(adTypes, e.(map[string]any)["type"].(string))
	}
	if len(adTypes) != 1 || adTypes[0] != "a.keep" {
		t.Errorf("account_data filter: %v", adTypes)
	}
	if section(r, "join", other) != nil {
		t.Error("not_rooms room was synced")
	}
	jr := section(r, "join", room)
	for _, e := range jr["state"].(map[string]any)["events"].([]any) {
		ev := e.(map[string]any)
		own := ev["type"] == "m.room.member" && ev["state_key"] == "@alice:localhost" // always sent
		if typ := ev["type"]; typ != "m.room.name" && !own {
			t.Errorf("state filter let %v through", typ)
		}
	}
	if jr["account_data"] != nil {
		t.Errorf("room account_data filter let c.drop through: %v", jr["account_data"])
	}
	if presenceOf(r, "@bob:localhost") != nil {
		t.Error("presence filter let bob through")
	}
	if presenceOf(r, "@alice:localhost") == nil {
		t.Error("presence filter dropped alice")
	}
}

// Invalid filters are refused with a 4xx (Complement TestFilter).
func TestInvalidFilters(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	for _, f := range []map[string]any{
		{"room": map[string]any{"timeline": map[string]any{"rooms": []string{"not_a_room_id"}}}},
		{"room": map[string]any{"timeline": map[string]any{"senders": []string{"not_a_sender_id"}}}},
		{"room": map[string]any{"not_rooms": []string{"nope"}}},
		{"event_format": "xml"},
		{"presence": map[string]any{"limit": -1}},
	} {
		if r := alice.Do("POST", "/_matrix/client/v3/user/@alice:localhost/filter", f); r.Status != 400 {
			t.Errorf("filter %v: %s", f, r)
		}
	}
}
