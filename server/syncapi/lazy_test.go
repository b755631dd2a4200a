package syncapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

func memberKeys(jr map[string]any) []string {
	var out []string
	for _, e := range jr["state"].(map[string]any)["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "m.room.member" {
			out = append(out, ev["state_key"].(string))
		}
	}
	return out
}

// Spec: "Lazy-loading room members": only the members the timeline needs,
// each sent once per connection unless redundant members are asked for.
// (The room has a name, so no heroes come with its summary.)
func TestLazyLoadedMembers(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Named"})
	var others []*servertest.Client
	for i := range 6 {
		c := s.Register(t, fmt.Sprintf("m%d", i), "pw")
		c.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
		others = append(others, c)
	}
	for i := range 12 {
		send(t, alice, room, fmt.Sprint("filler ", i)) // pushes the joins out of the timeline
	}
	send(t, others[0], room, "hi")
	lazy, _ := json.Marshal(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}, "state": map[string]any{"lazy_load_members": true}}})
	q := "&filter=" + url.QueryEscape(string(lazy))

	r := syncOnce(t, alice, "", 0, q)
	got := memberKeys(section(r, "join", room))
	if len(got) != 2 { // the sender m0, and alice herself
		t.Fatalf("lazy-loaded members: %v", got)
	}
	// m0 speaks again after a gap: already sent on this connection.
	for i := range 5 {
		send(t, alice, room, fmt.Sprint("more ", i))
	}
	send(t, others[0], room, "again")
	r = syncOnce(t, alice, r.Str("next_batch"), 0, q)
	if got := memberKeys(section(r, "join", room)); len(got) != 0 {
		t.Fatalf("members sent twice on one connection: %v", got)
	}
	// m1 speaks for the first time, in an incremental sync without a gap:
	// their member event comes along, though it did not change.
	send(t, others[1], room, "first words")
	r = syncOnce(t, alice, r.Str("next_batch"), 0, q)
	if got := memberKeys(section(r, "join", room)); len(got) != 1 || got[0] != "@m1:localhost" {
		t.Fatalf("a new sender's member event: %v", got)
	}
	// A new connection (initial sync) gets them again: the last three
	// events' senders are alice, m0 and m1.
	if got := memberKeys(section(syncOnce(t, alice, "", 0, q), "join", room)); len(got) != 3 {
		t.Fatalf("new connection: %v", got)
	}
}

// Spec: the room summary's m.heroes: "When lazy-loading room members is
// enabled, the membership events for the heroes MUST be included in the
// state": a client names a room without a name from them, even when
// none of them is in the timeline.
func TestLazyLoadedHeroes(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	for _, name := range []string{"bob", "carol"} {
		c := s.Register(t, name, "pw")
		c.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	}
	for i := range 5 {
		send(t, alice, room, fmt.Sprint("only alice speaks ", i))
	}
	lazy, _ := json.Marshal(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}, "state": map[string]any{"lazy_load_members": true}}})
	jr := section(syncOnce(t, alice, "", 0, "&filter="+url.QueryEscape(string(lazy))), "join", room)
	heroes, _ := jr["summary"].(map[string]any)["m.heroes"].([]any)
	if len(heroes) != 2 {
		t.Fatalf("heroes %v, want bob and carol", heroes)
	}
	got := memberKeys(jr)
	for _, h := range heroes {
		if !slices.Contains(got, h.(string)) {
			t.Errorf("hero %s has no member event in the state: %v", h, got)
		}
	}
}
