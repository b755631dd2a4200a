package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"hearth/server/servertest"
)

func createRoom(t *testing.T, c *servertest.Client, body map[string]any) string {
	t.Helper()
	r := c.Must(200, "POST", "/_matrix/client/v3/createRoom", body)
	id := r.Str("room_id")
	if !strings.HasPrefix(id, "!") {
		t.Fatalf("createRoom: %s", r)
	}
	return id
}

func roomPath(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}

var txnSeq int

func send(t *testing.T, c *servertest.Client, roomID, body string) string {
	t.Helper()
	txnSeq++
	r := c.Must(200, "PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.message/t%d", txnSeq)), map[string]any{"msgtype": "m.text", "body": body})
	return r.Str("event_id")
}

// stateMap returns the room state as "type|state_key" → content.
func stateMap(t *testing.T, c *servertest.Client, roomID string) map[string]map[string]any {
	t.Helper()
	r := c.Do("GET", roomPath(roomID, "/state"), nil)
	if r.Status != 200 {
		t.Fatalf("GET state: %s", r)
	}
	var evs []map[string]any
	if err := jsonUnmarshal(r.Body, &evs); err != nil {
		t.Fatalf("state is not a list: %s", r)
	}
	out := map[string]map[string]any{}
	for _, ev := range evs {
		out[ev["type"].(string)+"|"+ev["state_key"].(string)] = ev["content"].(map[string]any)
	}
	return out
}

// Spec: "Creation" (POST /createRoom), for every supported room version:
// the preset's state, name and topic, a message round trip, and the v12
// room ID derived from the create event.
func TestCreateRoomEveryVersion(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	caps := alice.Must(200, "GET", "/_matrix/client/v3/capabilities", nil).JSON["capabilities"].(map[string]any)
	rv := caps["m.room_versions"].(map[string]any)
	if rv["default"] != "12" {
		t.Fatalf("default room version: %v", rv)
	}
	for v := 1; v <= 12; v++ {
		version := fmt.Sprint(v)
		t.Run("v"+version, func(t *testing.T) {
			if rv["available"].(map[string]any)[version] != "stable" {
				t.Fatalf("capabilities lack v%s: %v", version, rv)
			}
			roomID := createRoom(t, alice, map[string]any{"room_version": version, "name": "Family", "topic": "Dinner plans", "preset": "private_chat"})
			st := stateMap(t, alice, roomID)
			if st["m.room.create|"]["room_version"] != version {
				t.Fatalf("create: %v", st["m.room.create|"])
			}
			for key, want := range map[string][2]string{
				"m.room.member|@alice:localhost": {"membership", "join"},
				"m.room.join_rules|":             {"join_rule", "invite"},
				"m.room.history_visibility|":     {"history_visibility", "shared"},
				"m.room.guest_access|":           {"guest_access", "can_join"},
				"m.room.name|":                   {"name", "Family"},
				"m.room.topic|":                  {"topic", "Dinner plans"},
			} {
				if st[key][want[0]] != want[1] {
					t.Errorf("%s: %v", key, st[key])
				}
			}
			if st["m.room.member|@alice:localhost"]["displayname"] != "alice" {
				t.Errorf("creator's member event lacks the profile: %v", st["m.room.member|@alice:localhost"])
			}
			ev := alice.Must(200, "GET", roomPath(roomID, "/state/m.room.create/")+"?format=event", nil)
			if v >= 12 && roomID != "!"+ev.Str("event_id")[1:] {
				t.Errorf("v12 room ID %s is not the create event's ID %s", roomID, ev.Str("event_id"))
			}
			if v < 12 && !strings.HasSuffix(roomID, ":localhost") {
				t.Errorf("room ID %s", roomID)
			}
			id := send(t, alice, roomID, "hello")
			got := alice.Must(200, "GET", roomPath(roomID, "/event/"+url.PathEscape(id)), nil)
			if got.JSON["content"].(map[string]any)["body"] != "hello" || got.Str("sender") != "@alice:localhost" || got.Str("room_id") != roomID {
				t.Fatalf("event: %s", got)
			}
			page := alice.Must(200, "GET", roomPath(roomID, "/messages?dir=b&limit=1"), nil)
			chunk := page.JSON["chunk"].([]any)
			if len(chunk) != 1 || chunk[0].(map[string]any)["event_id"] != id || page.Str("end") == "" {
				t.Fatalf("messages: %s", page)
			}
		})
	}
}

// The presets' invite level and guest access, as Synapse sets them:
// anyone may invite to a private chat, moderators to a public one; a
// public chat has no m.room.guest_access event (absent is forbidden).
func TestCreateRoomPresetDefaults(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	for _, tc := range []struct {
		preset string
		invite float64
		guest  any
	}{
		{"public_chat", 50, nil},
		{"private_chat", 0, "can_join"},
		{"trusted_private_chat", 0, "can_join"},
	} {
		st := stateMap(t, alice, createRoom(t, alice, map[string]any{"preset": tc.preset}))
		if got := st["m.room.power_levels|"]["invite"]; got != tc.invite {
			t.Errorf("%s: invite level %v, want %v", tc.preset, got, tc.invite)
		}
		if got := st["m.room.guest_access|"]["guest_access"]; got != tc.guest {
			t.Errorf("%s: guest access %v, want %v", tc.preset, got, tc.guest)
		}
	}
}

// initial_state that sets what the preset would (join rules, history
// visibility) replaces the preset's event rather than following it: the
// room gets one of each, initial_state's (found interoperating with
// Dendrite; Synapse leaves the preset's out).
func TestInitialStateReplacesPresetEvents(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
		map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "invite"}},
	}})
	r := alice.Must(200, "GET", roomPath(roomID, "/messages?dir=b&limit=50"), nil)
	count := map[string]int{}
	for _, e := range r.JSON["chunk"].([]any) {
		count[e.(map[string]any)["type"].(string)]++
	}
	for _, typ := range []string{"m.room.history_visibility", "m.room.join_rules"} {
		if count[typ] != 1 {
			t.Errorf("%d %s events in the room, want 1", count[typ], typ)
		}
	}
	st := stateMap(t, alice, roomID)
	if got := st["m.room.history_visibility|"]["history_visibility"]; got != "joined" {
		t.Errorf("history visibility %v, want initial_state's joined", got)
	}
	if got := st["m.room.join_rules|"]["join_rule"]; got != "invite" {
		t.Errorf("join rule %v, want initial_state's invite", got)
	}
}

// Room version 12's creators, asked wrongly, are bad requests (400), as
// Synapse answers them: additional_creators that are not user IDs, a
// power level override or a power levels event listing a creator, a
// second create event. creation_content's additional creators and a
// trusted private chat's invitees are all creators.
func TestRoomVersion12CreatorRequests(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	s.Register(t, "bob", "pw")
	for name, extra := range map[string]any{
		"not a list":      "@foo:example.com",
		"not strings":     []any{"@foo:example.com", 42},
		"not user IDs":    []any{"@foo:example.com", "not-a-user-id"},
		"bad server name": []any{"@invalid:dom$ain$.com"},
	} {
		r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"creation_content": map[string]any{"additional_creators": extra}})
		if r.Status != 400 {
			t.Errorf("additional_creators %s: %s", name, r)
		}
	}
	if r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"power_level_content_override": map[string]any{"users": map[string]int{"@alice:localhost": 100}}}); r.Status != 400 {
		t.Errorf("an override listing the creator: %s", r)
	}
	roomID := createRoom(t, alice, map[string]any{"preset": "trusted_private_chat", "invite": []string{"@bob:localhost"},
		"creation_content": map[string]any{"additional_creators": []string{"@carol:example.com"}}})
	st := stateMap(t, alice, roomID)
	if got := st["m.room.create|"]["additional_creators"]; fmt.Sprint(got) != "[@carol:example.com @bob:localhost]" {
		t.Errorf("additional_creators: %v, want carol's and the invitee bob's", got)
	}
	for _, creator := range []string{"@alice:localhost", "@bob:localhost", "@carol:example.com"} {
		r := alice.Do("PUT", roomPath(roomID, "/state/m.room.power_levels/"), map[string]any{"users": map[string]int{creator: 100}})
		if r.Status != 400 {
			t.Errorf("power levels listing the creator %s: %s", creator, r)
		}
	}
	if r := alice.Do("PUT", roomPath(roomID, "/state/m.room.create/"), map[string]any{"room_version": "12", "entropy": 1}); r.Status != 400 {
		t.Errorf("a second create event: %s", r)
	}
}

// Spec v1.16 room version 12: creators are not in the power levels'
// users, the tombstone level is 150, and trusted_private_chat makes the
// invitees additional creators.
func TestRoomVersion12CreationRules(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	s.Register(t, "bob", "pw")
	roomID := createRoom(t, alice, map[string]any{"preset": "trusted_private_chat", "invite": []string{"@bob:localhost"}, "is_direct": true})
	st := stateMap(t, alice, roomID)
	pl := st["m.room.power_levels|"]
	if users := pl["users"].(map[string]any); len(users) != 0 {
		t.Errorf("v12 power levels list users: %v", users)
	}
	if pl["events"].(map[string]any)["m.room.tombstone"] != 150.0 {
		t.Errorf("tombstone level: %v", pl["events"])
	}
	if ac := st["m.room.create|"]["additional_creators"]; fmt.Sprint(ac) != "[@bob:localhost]" {
		t.Errorf("additional_creators: %v", ac)
	}
	if inv := st["m.room.member|@bob:localhost"]; inv["membership"] != "invite" || inv["is_direct"] != true {
		t.Errorf("invite: %v", inv)
	}
	// Older versions list the creator (and trusted invitees) at 100.
	old := createRoom(t, alice, map[string]any{"room_version": "10", "preset": "trusted_private_chat", "invite": []string{"@bob:localhost"}})
	users := stateMap(t, alice, old)["m.room.power_levels|"]["users"].(map[string]any)
	if users["@alice:localhost"] != 100.0 || users["@bob:localhost"] != 100.0 {
		t.Errorf("v10 power level users: %v", users)
	}
}

// Spec: "Room membership": invites, joins, kicks, bans and unbans, each
// checked by the auth rules.
func TestMembership(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	private := createRoom(t, alice, map[string]any{"preset": "private_chat"})
	public := createRoom(t, alice, map[string]any{"preset": "public_chat"})

	// An invite-only room refuses the uninvited.
	if r := bob.Do("POST", roomPath(private, "/join"), map[string]any{}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("uninvited join: %s", r)
	}
	if r := bob.Do("PUT", roomPath(private, "/send/m.room.message/x1"), map[string]any{"body": "hi"}); r.Status != 403 {
		t.Fatalf("non-member send: %s", r)
	}
	alice.Must(200, "POST", roomPath(private, "/invite"), map[string]any{"user_id": "@bob:localhost"})
	if r := bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(private), map[string]any{}); r.Str("room_id") != private {
		t.Fatalf("join: %s", r)
	}
	send(t, bob, private, "thanks for the invite")
	joined := bob.Must(200, "GET", "/_matrix/client/v3/joined_rooms", nil).JSON["joined_rooms"].([]any)
	if len(joined) != 1 || joined[0] != private {
		t.Fatalf("joined_rooms: %v", joined)
	}
	jm := alice.Must(200, "GET", roomPath(private, "/joined_members"), nil).JSON["joined"].(map[string]any)
	if len(jm) != 2 || jm["@bob:localhost"].(map[string]any)["display_name"] != "bob" {
		t.Fatalf("joined_members: %v", jm)
	}

	// A public room lets anyone join; kick needs power.
	bob.Must(200, "POST", roomPath(public, "/join"), map[string]any{})
	carol.Must(200, "POST", roomPath(public, "/join"), map[string]any{})
	if r := bob.Do("POST", roomPath(public, "/kick"), map[string]any{"user_id": "@carol:localhost"}); r.Status != 403 {
		t.Fatalf("powerless kick: %s", r)
	}
	alice.Must(200, "POST", roomPath(public, "/kick"), map[string]any{"user_id": "@carol:localhost", "reason": "spam"})
	if r := carol.Do("PUT", roomPath(public, "/send/m.room.message/c1"), map[string]any{"body": "x"}); r.Status != 403 {
		t.Fatalf("kicked user sends: %s", r)
	}
	// A kicked user may rejoin a public room; a banned one may not.
	carol.Must(200, "POST", roomPath(public, "/join"), map[string]any{})
	alice.Must(200, "POST", roomPath(public, "/ban"), map[string]any{"user_id": "@carol:localhost", "reason": "more spam"})
	if r := carol.Do("POST", roomPath(public, "/join"), map[string]any{}); r.Status != 403 {
		t.Fatalf("banned user rejoined: %s", r)
	}
	if m := stateMap(t, alice, public)["m.room.member|@carol:localhost"]; m["membership"] != "ban" || m["reason"] != "more spam" {
		t.Fatalf("ban event: %v", m)
	}
	alice.Must(200, "POST", roomPath(public, "/unban"), map[string]any{"user_id": "@carol:localhost"})
	carol.Must(200, "POST", roomPath(public, "/join"), map[string]any{})

	members := alice.Must(200, "GET", roomPath(public, "/members?membership=join"), nil).JSON["chunk"].([]any)
	if len(members) != 3 {
		t.Fatalf("joined members: %d", len(members))
	}
	if r := alice.Must(200, "GET", roomPath(public, "/members?not_membership=join"), nil); len(r.JSON["chunk"].([]any)) != 0 {
		t.Fatalf("not_membership=join: %s", r)
	}

	// Leave, then forget.
	if r := bob.Do("POST", roomPath(public, "/forget"), nil); r.Status != 400 {
		t.Fatalf("forget while joined: %s", r)
	}
	bob.Must(200, "POST", roomPath(public, "/leave"), map[string]any{})
	bob.Must(200, "POST", roomPath(public, "/forget"), nil)
	joined = bob.Must(200, "GET", "/_matrix/client/v3/joined_rooms", nil).JSON["joined_rooms"].([]any)
	if len(joined) != 1 {
		t.Fatalf("joined_rooms after leave: %v", joined)
	}
}

// Power levels decide who may change state (spec: "Permissions").
func TestPowerLevelDenials(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	if r := bob.Do("PUT", roomPath(room, "/state/m.room.name/"), map[string]any{"name": "Bob's room"}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("powerless name change: %s", r)
	}
	if r := bob.Do("PUT", roomPath(room, "/state/m.room.power_levels/"), map[string]any{"users": map[string]int{"@bob:localhost": 100}}); r.Status != 403 {
		t.Fatalf("self-promotion: %s", r)
	}
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.name"), map[string]any{"name": "Alice's room"})
	got := bob.Must(200, "GET", roomPath(room, "/state/m.room.name/"), nil)
	if got.Str("name") != "Alice's room" {
		t.Fatalf("name: %s", got)
	}
	// prev_content shows what a state event replaced.
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.name/"), map[string]any{"name": "Renamed"})
	ev := bob.Must(200, "GET", roomPath(room, "/state/m.room.name/")+"?format=event", nil)
	prev, _ := ev.JSON["unsigned"].(map[string]any)["prev_content"].(map[string]any)
	if prev["name"] != "Alice's room" {
		t.Fatalf("prev_content: %s", ev)
	}
}

// A user who left sees the room as it was when they left, and nothing
// after (history visibility "shared").
func TestReadsAfterLeaving(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Before"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	before := send(t, alice, room, "while bob is here")
	bob.Must(200, "POST", roomPath(room, "/leave"), map[string]any{})
	after := send(t, alice, room, "after bob left")
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.name/"), map[string]any{"name": "After"})

	bob.Must(200, "GET", roomPath(room, "/event/"+url.PathEscape(before)), nil)
	if r := bob.Do("GET", roomPath(room, "/event/"+url.PathEscape(after)), nil); r.Status != 404 {
		t.Fatalf("event after leaving: %s", r)
	}
	if name := bob.Must(200, "GET", roomPath(room, "/state/m.room.name/"), nil).Str("name"); name != "Before" {
		t.Fatalf("state after leaving shows name %q", name)
	}
	chunk := bob.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=50"), nil).JSON["chunk"].([]any)
	var ids []string
	for _, e := range chunk {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	if !slices.Contains(ids, before) || slices.Contains(ids, after) {
		t.Fatalf("messages after leaving: %v", ids)
	}
	// Someone who was never in the room sees nothing.
	carol := s.Register(t, "carol", "pw")
	for _, path := range []string{"/state", "/messages?dir=b", "/members"} {
		if r := carol.Do("GET", roomPath(room, path), nil); r.Status != 403 {
			t.Errorf("stranger GET %s: %s", path, r)
		}
	}
	// An event is simply not found, as Synapse answers.
	if r := carol.Do("GET", roomPath(room, "/event/"+url.PathEscape(before)), nil); r.Status != 404 {
		t.Errorf("stranger GET /event: %s", r)
	}
}

// Spec: PUT /send is idempotent per device and transaction ID.
func TestSendIdempotent(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{})
	path := roomPath(room, "/send/m.room.message/same-txn")
	first := alice.Must(200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Str("event_id")
	again := alice.Must(200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Str("event_id")
	if first != again {
		t.Fatalf("retry made a second event: %s, %s", first, again)
	}
	// The same transaction ID from another device is another event.
	other := s.Login(t, "alice", "pw")
	if id := other.Must(200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Str("event_id"); id == first {
		t.Fatal("another device's transaction was deduplicated")
	}
	chunk := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=100"), nil).JSON["chunk"].([]any)
	n := 0
	for _, e := range chunk {
		if e.(map[string]any)["type"] == "m.room.message" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d messages in the timeline, want 2", n)
	}
}

// Bad room input gets the spec's errors and leaves nothing behind.
func TestRoomBadInput(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{})
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"unsupported version", "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_version": "99"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"unknown preset", "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "party"}, 400, "M_BAD_JSON"},
		{"power levels in initial_state", "POST", "/_matrix/client/v3/createRoom", map[string]any{"initial_state": []any{map[string]any{"type": "m.room.power_levels", "content": map[string]any{}}}}, 400, "M_BAD_JSON"},
		{"bad invitee", "POST", "/_matrix/client/v3/createRoom", map[string]any{"invite": []string{"bob"}}, 400, "M_INVALID_PARAM"},
		{"name of wrong type", "POST", "/_matrix/client/v3/createRoom", map[string]any{"name": 5}, 400, "M_BAD_JSON"},
		{"send to unknown room", "PUT", roomPath("!nope:localhost", "/send/m.room.message/1"), map[string]any{"body": "x"}, 404, "M_NOT_FOUND"},
		{"content not JSON", "PUT", roomPath(room, "/send/m.room.message/2"), "{body", 400, "M_NOT_JSON"},
		{"content not an object", "PUT", roomPath(room, "/send/m.room.message/3"), "[1]", 400, "M_BAD_JSON"},
		{"event too large", "PUT", roomPath(room, "/send/m.room.message/4"), map[string]any{"body": strings.Repeat("x", 70000)}, 413, "M_TOO_LARGE"},
		{"bad join rule content", "PUT", roomPath(room, "/state/m.room.member/@x:localhost"), map[string]any{"membership": 5}, 400, "M_BAD_JSON"},
		{"messages with a bad dir", "GET", roomPath(room, "/messages?dir=up"), nil, 400, "M_INVALID_PARAM"},
		{"messages bad token", "GET", roomPath(room, "/messages?dir=b&from=garbage"), nil, 400, "M_INVALID_PARAM"},
		{"unknown event", "GET", roomPath(room, "/event/$nope"), nil, 404, "M_NOT_FOUND"},
		{"unset state", "GET", roomPath(room, "/state/m.room.topic/"), nil, 404, "M_NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := alice.Do(tc.method, tc.path, tc.body)
			if r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}
	joined := alice.Must(200, "GET", "/_matrix/client/v3/joined_rooms", nil).JSON["joined_rooms"].([]any)
	if len(joined) != 1 {
		t.Fatalf("refused createRoom calls left rooms behind: %v", joined)
	}
	chunk := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=100"), nil).JSON["chunk"].([]any)
	for _, e := range chunk {
		if e.(map[string]any)["type"] == "m.room.message" {
			t.Fatalf("a refused send left an event: %v", e)
		}
	}
}

// Setting state to what it already is returns the same event, as Synapse
// does (Complement "Setting state twice is idempotent", "Joining room
// twice is idempotent").
func TestIdenticalStateIsOneEvent(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	first := alice.Must(200, "PUT", roomPath(room, "/state/a.test/"), map[string]any{"a_key": "a_value"}).Str("event_id")
	second := alice.Must(200, "PUT", roomPath(room, "/state/a.test/"), map[string]any{"a_key": "a_value"}).Str("event_id")
	if first != second {
		t.Fatalf("identical state made two events: %s, %s", first, second)
	}
	third := alice.Must(200, "PUT", roomPath(room, "/state/a.test/"), map[string]any{"a_key": "changed"}).Str("event_id")
	if third == first {
		t.Fatal("changed state was deduplicated")
	}
	before := len(alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=100"), nil).JSON["chunk"].([]any))
	alice.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	if after := len(alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=100"), nil).JSON["chunk"].([]any)); after != before {
		t.Fatalf("joining twice added %d events", after-before)
	}
}
