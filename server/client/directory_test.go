package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"hearth/server/servertest"
	"hearth/store"
)

func aliasPath(alias string) string {
	return "/_matrix/client/v3/directory/room/" + url.PathEscape(alias)
}

func listPath(roomID string) string {
	return "/_matrix/client/v3/directory/list/room/" + url.PathEscape(roomID)
}

// makeAdmin turns a registered account into a server admin.
func makeAdmin(t *testing.T, s *servertest.Server, localpart string) {
	t.Helper()
	if err := s.Accounts().UpdateProfile(localpart, func(u *store.User) { u.Admin = true }); err != nil {
		t.Fatal(err)
	}
}

func setCanonicalAlias(c *servertest.Client, roomID string, content map[string]any) *servertest.Response {
	return c.Do("PUT", roomPath(roomID, "/state/m.room.canonical_alias/"), content)
}

func roomAliasesOf(t *testing.T, c *servertest.Client, roomID string) []string {
	t.Helper()
	r := c.Must(200, "GET", roomPath(roomID, "/aliases"), nil)
	list, ok := r.JSON["aliases"].([]any)
	if !ok {
		t.Fatalf("aliases: %s", r)
	}
	out := []string{}
	for _, a := range list {
		out = append(out, a.(string))
	}
	return out
}

// Spec: "Room aliases" (PUT and GET /directory/room/{roomAlias}, GET
// /rooms/{roomId}/aliases): members create local aliases, anyone resolves
// them, a taken alias is 409, malformed or remote ones are 400, and only
// members (or anyone, once history is world_readable) list a room's.
func TestRoomAliases(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	anon := s.Client(t)
	room := createRoom(t, alice, map[string]any{"preset": "private_chat"})
	other := createRoom(t, alice, map[string]any{})

	alice.Must(200, "PUT", aliasPath("#family:localhost"), map[string]any{"room_id": room})
	r := anon.Must(200, "GET", aliasPath("#family:localhost"), nil)
	if r.Str("room_id") != room || fmt.Sprint(r.JSON["servers"]) != "[localhost]" {
		t.Fatalf("resolve: %s", r)
	}
	// r0 is served too, and a Unicode localpart is fine.
	alice.Must(200, "PUT", "/_matrix/client/r0/directory/room/"+url.PathEscape("#老虎Â£я:localhost"), map[string]any{"room_id": room})
	if r := bob.Must(200, "GET", aliasPath("#老虎Â£я:localhost"), nil); r.Str("room_id") != room {
		t.Fatalf("unicode alias: %s", r)
	}

	for _, tc := range []struct {
		name    string
		who     *servertest.Client
		alias   string
		body    any
		status  int
		errcode string
	}{
		{"taken, same room", alice, "#family:localhost", map[string]any{"room_id": room}, 409, "M_UNKNOWN"},
		{"taken, other room", alice, "#family:localhost", map[string]any{"room_id": other}, 409, "M_UNKNOWN"},
		{"not a member", bob, "#bobs:localhost", map[string]any{"room_id": room}, 403, "M_FORBIDDEN"},
		{"unknown room, not a member", bob, "#nowhere:localhost", map[string]any{"room_id": "!nope:localhost"}, 403, "M_FORBIDDEN"},
		{"another server", alice, "#family:elsewhere.example", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"no sigil", alice, "family:localhost", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"no server", alice, "#family", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"empty localpart", alice, "#:localhost", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"whitespace", alice, "#the family:localhost", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"bad server name", alice, "#family:local_host!", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"over 255 bytes", alice, "#" + strings.Repeat("a", 250) + ":localhost", map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
		{"missing room_id", alice, "#family2:localhost", map[string]any{}, 400, "M_MISSING_PARAM"},
		{"room_id not a room ID", alice, "#family2:localhost", map[string]any{"room_id": "family"}, 400, "M_INVALID_PARAM"},
		{"room_id not a string", alice, "#family2:localhost", map[string]any{"room_id": 7}, 400, "M_BAD_JSON"},
	} {
		t.Run("PUT "+tc.name, func(t *testing.T) {
			wantMatrixErr(t, tc.name, tc.who.Do("PUT", aliasPath(tc.alias), tc.body), tc.status, tc.errcode)
		})
	}
	if r := anon.Do("PUT", aliasPath("#anon:localhost"), map[string]any{"room_id": room}); r.Status != 401 {
		t.Fatalf("anonymous PUT: %s", r)
	}
	// A refused PUT left nothing behind; the taken alias still points home.
	if r := anon.Must(200, "GET", aliasPath("#family:localhost"), nil); r.Str("room_id") != room {
		t.Fatalf("taken alias moved: %s", r)
	}

	for _, tc := range []struct {
		alias   string
		status  int
		errcode string
	}{
		{"#unknown:localhost", 404, "M_NOT_FOUND"},
		{"#family:elsewhere.example", 502, "M_UNKNOWN"}, // asked over federation; nobody answers
		{"family", 400, "M_INVALID_PARAM"},
		{"", 400, "M_INVALID_PARAM"},
	} {
		wantMatrixErr(t, "GET "+tc.alias, anon.Do("GET", aliasPath(tc.alias), nil), tc.status, tc.errcode)
	}

	if got := roomAliasesOf(t, alice, room); !slices.Equal(got, []string{"#family:localhost", "#老虎Â£я:localhost"}) {
		t.Fatalf("room aliases: %v", got)
	}
	if got := roomAliasesOf(t, alice, other); len(got) != 0 {
		t.Fatalf("aliases of a room without any: %v", got)
	}
	wantMatrixErr(t, "aliases for a non-member", bob.Do("GET", roomPath(room, "/aliases"), nil), 403, "M_FORBIDDEN")
	wantMatrixErr(t, "aliases of an unknown room", bob.Do("GET", roomPath("!nope:localhost", "/aliases"), nil), 403, "M_FORBIDDEN")
	if r := anon.Do("GET", roomPath(room, "/aliases"), nil); r.Status != 401 {
		t.Fatalf("anonymous aliases: %s", r)
	}
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.history_visibility/"), map[string]any{"history_visibility": "world_readable"})
	if got := roomAliasesOf(t, bob, room); len(got) != 2 {
		t.Fatalf("aliases of a world_readable room: %v", got)
	}
	// A server admin lists any room's aliases.
	admin := s.Register(t, "admin", "pw")
	makeAdmin(t, s, "admin")
	admin.Must(200, "PUT", aliasPath("#by-admin:localhost"), map[string]any{"room_id": other})
	if got := roomAliasesOf(t, admin, other); !slices.Equal(got, []string{"#by-admin:localhost"}) {
		t.Fatalf("admin's view: %v", got)
	}
}

// Spec: DELETE /directory/room/{roomAlias}, with Synapse's rules: the
// alias's creator, a server admin, or a member with the power to send
// m.room.canonical_alias may delete it, and the room's canonical alias
// event drops it when the deleter may send one.
func TestDeleteAlias(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	dave := s.Register(t, "dave", "pw")
	makeAdmin(t, s, "dave")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	gone := func(alias string) {
		t.Helper()
		wantMatrixErr(t, "GET deleted "+alias, alice.Do("GET", aliasPath(alias), nil), 404, "M_NOT_FOUND")
	}

	// The creator needs no power.
	bob.Must(200, "PUT", aliasPath("#bobs:localhost"), map[string]any{"room_id": room})
	bob.Must(200, "DELETE", aliasPath("#bobs:localhost"), nil)
	gone("#bobs:localhost")
	wantMatrixErr(t, "delete twice", bob.Do("DELETE", aliasPath("#bobs:localhost"), nil), 404, "M_NOT_FOUND")
	wantMatrixErr(t, "delete unknown", alice.Do("DELETE", aliasPath("#scatman:localhost"), nil), 404, "M_NOT_FOUND")
	wantMatrixErr(t, "delete invalid", alice.Do("DELETE", aliasPath("scatman"), nil), 400, "M_INVALID_PARAM")

	// Others' aliases need power over the canonical alias.
	alice.Must(200, "PUT", aliasPath("#alices:localhost"), map[string]any{"room_id": room})
	wantMatrixErr(t, "member without power", bob.Do("DELETE", aliasPath("#alices:localhost"), nil), 403, "M_FORBIDDEN")
	wantMatrixErr(t, "non-member", carol.Do("DELETE", aliasPath("#alices:localhost"), nil), 403, "M_FORBIDDEN")
	if r := alice.Must(200, "GET", aliasPath("#alices:localhost"), nil); r.Str("room_id") != room {
		t.Fatalf("refused delete removed the alias: %s", r)
	}
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.power_levels/"), map[string]any{
		"users": map[string]any{"@bob:localhost": 50}, "events": map[string]any{"m.room.canonical_alias": 50},
	})
	bob.Must(200, "DELETE", aliasPath("#alices:localhost"), nil)
	gone("#alices:localhost")

	// A server admin needs neither membership nor power.
	alice.Must(200, "PUT", aliasPath("#admins-target:localhost"), map[string]any{"room_id": room})
	dave.Must(200, "DELETE", aliasPath("#admins-target:localhost"), nil)
	gone("#admins-target:localhost")

	// Deleting an alias the canonical alias event names updates the event.
	for _, a := range []string{"#main:localhost", "#alt:localhost"} {
		alice.Must(200, "PUT", aliasPath(a), map[string]any{"room_id": room})
	}
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.canonical_alias/"), map[string]any{
		"alias": "#main:localhost", "alt_aliases": []string{"#main:localhost", "#alt:localhost"},
	})
	alice.Must(200, "DELETE", aliasPath("#main:localhost"), nil)
	if c := stateMap(t, alice, room)["m.room.canonical_alias|"]; c["alias"] != nil || fmt.Sprint(c["alt_aliases"]) != "[#alt:localhost]" {
		t.Fatalf("canonical alias after deleting the main alias: %v", c)
	}
	alice.Must(200, "DELETE", aliasPath("#alt:localhost"), nil)
	if c := stateMap(t, alice, room)["m.room.canonical_alias|"]; len(c) != 0 {
		t.Fatalf("canonical alias after deleting every alias: %v", c)
	}

	// A creator without the power to change the canonical alias still
	// deletes the alias; the event keeps naming it.
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.power_levels/"), map[string]any{
		"users": map[string]any{}, "events": map[string]any{"m.room.canonical_alias": 50},
	})
	bob.Must(200, "PUT", aliasPath("#bobs-canonical:localhost"), map[string]any{"room_id": room})
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.canonical_alias/"), map[string]any{"alias": "#bobs-canonical:localhost"})
	bob.Must(200, "DELETE", aliasPath("#bobs-canonical:localhost"), nil)
	gone("#bobs-canonical:localhost")
	if c := stateMap(t, alice, room)["m.room.canonical_alias|"]; c["alias"] != "#bobs-canonical:localhost" {
		t.Fatalf("canonical alias changed by a user without the power to: %v", c)
	}
	if got := roomAliasesOf(t, alice, room); len(got) != 0 {
		t.Fatalf("aliases left: %v", got)
	}
}

// Spec: PUT /rooms/{roomId}/state/m.room.canonical_alias: every alias it
// adds must be well formed (M_INVALID_PARAM) and, when local, point to the
// room (M_BAD_ALIAS); aliases it already named are not checked again.
func TestCanonicalAliasValidation(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	other := createRoom(t, alice, map[string]any{})
	alice.Must(200, "PUT", aliasPath("#here:localhost"), map[string]any{"room_id": room})
	alice.Must(200, "PUT", aliasPath("#here2:localhost"), map[string]any{"room_id": room})
	alice.Must(200, "PUT", aliasPath("#there:localhost"), map[string]any{"room_id": other})

	for _, tc := range []struct {
		name    string
		content map[string]any
		status  int
		errcode string
	}{
		{"present alias", map[string]any{"alias": "#here:localhost"}, 200, ""},
		{"present alt_aliases", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#here:localhost", "#here2:localhost"}}, 200, ""},
		{"remote alias, not checkable yet", map[string]any{"alt_aliases": []string{"#x:elsewhere.example"}}, 200, ""},
		{"empty content", map[string]any{}, 200, ""},
		{"missing alias", map[string]any{"alias": "#missing:localhost"}, 400, "M_BAD_ALIAS"},
		{"alias of another room", map[string]any{"alias": "#there:localhost"}, 400, "M_BAD_ALIAS"},
		{"invalid alias", map[string]any{"alias": "%invalid:localhost"}, 400, "M_INVALID_PARAM"},
		{"alias not a string", map[string]any{"alias": 5}, 400, "M_INVALID_PARAM"},
		{"missing alt alias", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#missing:localhost"}}, 400, "M_BAD_ALIAS"},
		{"alt alias of another room", map[string]any{"alt_aliases": []string{"#there:localhost"}}, 400, "M_BAD_ALIAS"},
		{"invalid alt alias", map[string]any{"alt_aliases": []string{"%invalid:localhost"}}, 400, "M_INVALID_PARAM"},
		{"alt_aliases not a list", map[string]any{"alt_aliases": "#here:localhost"}, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := setCanonicalAlias(alice, room, tc.content)
			if tc.status == 200 {
				if r.Status != 200 || r.Str("event_id") == "" {
					t.Fatalf("want 200 with an event ID, got %s", r)
				}
				return
			}
			wantMatrixErr(t, tc.name, r, tc.status, tc.errcode)
		})
	}
	// Power is checked before content: a powerless member is refused with 403.
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	wantMatrixErr(t, "powerless", setCanonicalAlias(bob, room, map[string]any{"alias": "#missing:localhost"}), 403, "M_FORBIDDEN")
	if c := stateMap(t, alice, room)["m.room.canonical_alias|"]; len(c) != 0 {
		t.Fatalf("a refused event changed the state: %v", c)
	}

	// An alias deleted after it was set does not block later changes, but
	// cannot be added again.
	bob.Must(200, "PUT", aliasPath("#bobs:localhost"), map[string]any{"room_id": room})
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.canonical_alias/"), map[string]any{"alt_aliases": []string{"#bobs:localhost"}})
	bob.Must(200, "DELETE", aliasPath("#bobs:localhost"), nil) // bob may not edit the event: it keeps the alias
	alice.Must(200, "PUT", roomPath(room, "/state/m.room.canonical_alias/"), map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#bobs:localhost"}})
	wantMatrixErr(t, "deleted alias re-added", setCanonicalAlias(alice, room, map[string]any{"alias": "#bobs:localhost", "alt_aliases": []string{"#bobs:localhost"}}), 400, "M_BAD_ALIAS")
}

// Spec: createRoom's room_alias_name creates the alias with the room and
// an m.room.canonical_alias event right after the power levels; a taken
// alias is 400 M_ROOM_IN_USE and creates nothing.
func TestCreateRoomWithAlias(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	for _, version := range []string{"10", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			name := "pub" + version
			alias := "#" + name + ":localhost"
			room := createRoom(t, alice, map[string]any{"room_version": version, "preset": "public_chat", "room_alias_name": name})
			if r := alice.Must(200, "GET", aliasPath(alias), nil); r.Str("room_id") != room {
				t.Fatalf("alias: %s", r)
			}
			page := alice.Must(200, "GET", roomPath(room, "/messages?dir=f&limit=10"), nil)
			var types []string
			for _, ev := range page.JSON["chunk"].([]any) {
				e := ev.(map[string]any)
				types = append(types, e["type"].(string))
				if e["type"] == "m.room.canonical_alias" && e["content"].(map[string]any)["alias"] != alias {
					t.Fatalf("canonical alias event: %v", e)
				}
			}
			want := []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.canonical_alias", "m.room.join_rules"}
			if len(types) < len(want) || !slices.Equal(types[:len(want)], want) {
				t.Fatalf("createRoom sequence: %v", types)
			}
			if got := roomAliasesOf(t, alice, room); !slices.Equal(got, []string{alias}) {
				t.Fatalf("room aliases: %v", got)
			}
		})
	}

	joinedCount := func() int {
		return len(alice.Must(200, "GET", "/_matrix/client/v3/joined_rooms", nil).JSON["joined_rooms"].([]any))
	}
	before := joinedCount()
	for _, tc := range []struct {
		name    string
		body    map[string]any
		errcode string
	}{
		{"taken", map[string]any{"room_alias_name": "pub12"}, "M_ROOM_IN_USE"},
		{"colon", map[string]any{"room_alias_name": "a:b"}, "M_INVALID_PARAM"},
		{"whitespace", map[string]any{"room_alias_name": "a b"}, "M_INVALID_PARAM"},
		{"too long", map[string]any{"room_alias_name": strings.Repeat("x", 250)}, "M_INVALID_PARAM"},
		{"initial_state names another room's alias", map[string]any{"room_alias_name": "fresh", "initial_state": []any{
			map[string]any{"type": "m.room.canonical_alias", "state_key": "", "content": map[string]any{"alias": "#pub12:localhost"}},
		}}, "M_BAD_ALIAS"},
		{"initial_state names a missing alias", map[string]any{"initial_state": []any{
			map[string]any{"type": "m.room.canonical_alias", "state_key": "", "content": map[string]any{"alt_aliases": []string{"#nothing:localhost"}}},
		}}, "M_BAD_ALIAS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantMatrixErr(t, tc.name, alice.Do("POST", "/_matrix/client/v3/createRoom", tc.body), 400, tc.errcode)
		})
	}
	if n := joinedCount(); n != before {
		t.Fatalf("refused createRoom calls created %d rooms", n-before)
	}
	wantMatrixErr(t, "alias of a refused createRoom", alice.Do("GET", aliasPath("#fresh:localhost"), nil), 404, "M_NOT_FOUND")

	// initial_state may name the room's own new alias.
	room := createRoom(t, alice, map[string]any{"room_alias_name": "own", "initial_state": []any{
		map[string]any{"type": "m.room.canonical_alias", "state_key": "", "content": map[string]any{"alias": "#own:localhost", "alt_aliases": []string{"#own:localhost"}}},
	}})
	if c := stateMap(t, alice, room)["m.room.canonical_alias|"]; fmt.Sprint(c["alt_aliases"]) != "[#own:localhost]" {
		t.Fatalf("initial_state canonical alias: %v", c)
	}
}

// Spec: POST /join/{roomIdOrAlias} and /knock/{roomIdOrAlias} accept a
// local alias.
func TestJoinByAlias(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_alias_name": "lounge"})
	if r := bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape("#lounge:localhost"), map[string]any{}); r.Str("room_id") != room {
		t.Fatalf("join by alias: %s", r)
	}
	if m := stateMap(t, alice, room)["m.room.member|@bob:localhost"]; m["membership"] != "join" {
		t.Fatalf("bob's membership: %v", m)
	}
	wantMatrixErr(t, "unknown alias", bob.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape("#nowhere:localhost"), map[string]any{}), 404, "M_NOT_FOUND")
	wantMatrixErr(t, "remote alias", bob.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape("#lounge:elsewhere.example"), map[string]any{}), 502, "M_UNKNOWN")
	wantMatrixErr(t, "malformed alias", bob.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape("#lounge"), map[string]any{}), 400, "M_INVALID_PARAM")

	knockRoom := createRoom(t, alice, map[string]any{"room_alias_name": "porch", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	if r := bob.Must(200, "POST", "/_matrix/client/v3/knock/"+url.PathEscape("#porch:localhost"), map[string]any{}); r.Str("room_id") != knockRoom {
		t.Fatalf("knock by alias: %s", r)
	}
	if m := stateMap(t, alice, knockRoom)["m.room.member|@bob:localhost"]; m["membership"] != "knock" {
		t.Fatalf("bob's knock: %v", m)
	}
}

// Spec: GET and PUT /directory/list/room/{roomId}: createRoom's
// visibility publishes; reading needs no account; changing needs the power
// to send m.room.canonical_alias, or a server admin (Synapse).
func TestRoomDirectoryVisibility(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	s.Register(t, "dave", "pw")
	makeAdmin(t, s, "dave")
	dave := s.Login(t, "dave", "pw")
	anon := s.Client(t)
	visibility := func(roomID string) string {
		t.Helper()
		return anon.Must(200, "GET", listPath(roomID), nil).Str("visibility")
	}
	pub := createRoom(t, alice, map[string]any{"visibility": "public"})
	priv := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	if visibility(pub) != "public" || visibility(priv) != "private" {
		t.Fatalf("visibility after createRoom: %s %s", visibility(pub), visibility(priv))
	}
	wantMatrixErr(t, "GET unknown room", anon.Do("GET", listPath("!nope:localhost"), nil), 404, "M_NOT_FOUND")

	bob.Must(200, "POST", roomPath(priv, "/join"), map[string]any{})
	for _, tc := range []struct {
		name    string
		who     *servertest.Client
		room    string
		body    any
		status  int
		errcode string
	}{
		{"member without power", bob, priv, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN"},
		{"non-member", carol, priv, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN"},
		{"unknown room", alice, "!nope:localhost", map[string]any{"visibility": "public"}, 404, "M_NOT_FOUND"},
		{"bad visibility", alice, priv, map[string]any{"visibility": "everyone"}, 400, "M_INVALID_PARAM"},
		{"anonymous", anon, priv, map[string]any{"visibility": "public"}, 401, "M_MISSING_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantMatrixErr(t, tc.name, tc.who.Do("PUT", listPath(tc.room), tc.body), tc.status, tc.errcode)
		})
	}
	if visibility(priv) != "private" {
		t.Fatal("a refused PUT published the room")
	}
	alice.Must(200, "PUT", listPath(priv), map[string]any{}) // the spec's default is public
	if visibility(priv) != "public" {
		t.Fatal("PUT {} did not publish")
	}
	alice.Must(200, "PUT", listPath(priv), map[string]any{"visibility": "private"})
	if visibility(priv) != "private" {
		t.Fatal("PUT private did not unpublish")
	}
	// A moderator may; so may an admin who is not in the room.
	alice.Must(200, "PUT", roomPath(priv, "/state/m.room.power_levels/"), map[string]any{
		"users": map[string]any{"@bob:localhost": 50}, "events": map[string]any{"m.room.canonical_alias": 50},
	})
	bob.Must(200, "PUT", listPath(priv), map[string]any{"visibility": "public"})
	dave.Must(200, "PUT", listPath(pub), map[string]any{"visibility": "private"})
	if visibility(priv) != "public" || visibility(pub) != "private" {
		t.Fatalf("visibility after moderator and admin: %s %s", visibility(priv), visibility(pub))
	}
}

// publicRoomPages pages through /publicRooms (GET, or POST with filter)
// following next_batch, and returns every page's room IDs.
func publicRoomPages(t *testing.T, c *servertest.Client, post bool, limit int, filter map[string]any) ([][]string, []*servertest.Response) {
	t.Helper()
	var pages [][]string
	var resps []*servertest.Response
	since := ""
	for i := 0; i < 50; i++ {
		var r *servertest.Response
		if post {
			body := map[string]any{"limit": limit}
			if since != "" {
				body["since"] = since
			}
			if filter != nil {
				body["filter"] = filter
			}
			r = c.Must(200, "POST", "/_matrix/client/v3/publicRooms", body)
		} else {
			r = c.Must(200, "GET", fmt.Sprintf("/_matrix/client/v3/publicRooms?limit=%d&since=%s", limit, url.QueryEscape(since)), nil)
		}
		pages = append(pages, chunkIDs(t, r))
		resps = append(resps, r)
		if since = r.Str("next_batch"); since == "" {
			return pages, resps
		}
	}
	t.Fatal("publicRooms pagination does not end")
	return nil, nil
}

func chunkIDs(t *testing.T, r *servertest.Response) []string {
	t.Helper()
	chunk, ok := r.JSON["chunk"].([]any)
	if !ok {
		t.Fatalf("publicRooms without a chunk: %s", r)
	}
	ids := []string{}
	for _, e := range chunk {
		ids = append(ids, e.(map[string]any)["room_id"].(string))
	}
	return ids
}

// Spec: GET and POST /publicRooms: published rooms anyone may join, the
// most joined first, with entries read from current state, the search
// filter and room_types, and next_batch/prev_batch pagination that visits
// every room once in both directions.
func TestPublicRooms(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	var others []*servertest.Client
	for i := range 4 {
		others = append(others, s.Register(t, fmt.Sprintf("user%d", i), "pw"))
	}
	anon := s.Client(t)

	// Seven published rooms with 1 to 5 members; room i has i%5+1.
	var want []string // in the directory's order, filled below
	members := map[string]int{}
	for i := range 7 {
		room := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": fmt.Sprintf("Room %d", i)})
		for _, u := range others[:i%5] {
			u.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
		}
		members[room] = i%5 + 1
		want = append(want, room)
	}
	slices.SortFunc(want, func(a, b string) int {
		if members[a] != members[b] {
			return members[b] - members[a]
		}
		return strings.Compare(b, a)
	})

	// Rooms the directory leaves out: unpublished, and published but
	// invite-only. A published invite-only room with world_readable
	// history is listed.
	createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Not published"})
	createRoom(t, alice, map[string]any{"visibility": "public", "preset": "private_chat", "name": "Invite only"})

	for _, tc := range []struct {
		name string
		c    *servertest.Client
		post bool
	}{{"GET anonymous", anon, false}, {"GET", alice, false}, {"POST", alice, true}} {
		t.Run(tc.name+" pages", func(t *testing.T) {
			pages, resps := publicRoomPages(t, tc.c, tc.post, 3, nil)
			if len(pages) != 3 || resps[0].Str("prev_batch") != "" {
				t.Fatalf("pages: %v, first: %s", pages, resps[0])
			}
			if got := slices.Concat(pages...); !slices.Equal(got, want) {
				t.Fatalf("rooms across pages:\n got %v\nwant %v", got, want)
			}
			for _, r := range resps {
				if r.JSON["total_room_count_estimate"] != float64(7) {
					t.Fatalf("total_room_count_estimate: %s", r)
				}
			}
			// prev_batch of page 3 gives page 2, whose prev_batch gives page 1.
			prev := resps[2].Str("prev_batch")
			for p := 1; p >= 0; p-- {
				r := tc.c.Must(200, "GET", "/_matrix/client/v3/publicRooms?limit=3&since="+url.QueryEscape(prev), nil)
				if got := chunkIDs(t, r); !slices.Equal(got, pages[p]) {
					t.Fatalf("back to page %d: got %v, want %v", p+1, got, pages[p])
				}
				if r.Str("next_batch") == "" {
					t.Fatalf("backward page without next_batch: %s", r)
				}
				prev = r.Str("prev_batch")
				if (p == 0) != (prev == "") {
					t.Fatalf("page %d prev_batch %q", p+1, prev)
				}
			}
		})
	}

	// Entries read the room's current state.
	room := want[0]
	alice.Must(200, "PUT", aliasPath("#biggest:localhost"), map[string]any{"room_id": room})
	for typ, content := range map[string]map[string]any{
		"m.room.canonical_alias":    {"alias": "#biggest:localhost"},
		"m.room.topic":              {"topic": "Wombles of Wimbledon"},
		"m.room.avatar":             {"url": "mxc://localhost/avatar"},
		"m.room.history_visibility": {"history_visibility": "world_readable"},
		"m.room.guest_access":       {"guest_access": "can_join"},
		"m.room.name":               {"name": "The Big Room"},
	} {
		alice.Must(200, "PUT", roomPath(room, "/state/"+typ+"/"), content)
	}
	r := anon.Must(200, "GET", "/_matrix/client/v3/publicRooms?limit=1", nil)
	entry := r.JSON["chunk"].([]any)[0].(map[string]any)
	wantEntry := map[string]any{
		"room_id": room, "name": "The Big Room", "topic": "Wombles of Wimbledon", "canonical_alias": "#biggest:localhost",
		"num_joined_members": float64(5), "world_readable": true, "guest_can_join": true, "join_rule": "public",
		"avatar_url": "mxc://localhost/avatar",
	}
	if fmt.Sprint(entry) != fmt.Sprint(wantEntry) {
		t.Fatalf("entry:\n got %v\nwant %v", entry, wantEntry)
	}

	space := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Club space", "creation_content": map[string]any{"type": "m.space"}})
	readable := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "private_chat", "name": "Minutes", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "world_readable"}},
	}})
	for _, tc := range []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"topic, any case", map[string]any{"generic_search_term": "WOMBLES"}, []string{room}},
		{"name", map[string]any{"generic_search_term": "room 3"}, []string{want[slices.IndexFunc(want, func(id string) bool { return members[id] == 4 })]}},
		{"canonical alias", map[string]any{"generic_search_term": "#biggest"}, []string{room}},
		{"nothing", map[string]any{"generic_search_term": "kumquat"}, []string{}},
		{"spaces only", map[string]any{"room_types": []any{"m.space"}}, []string{space}},
		{"world_readable invite-only room", map[string]any{"generic_search_term": "minutes"}, []string{readable}},
		{"untyped rooms and spaces", map[string]any{"generic_search_term": "club", "room_types": []any{nil, "m.space"}}, []string{space}},
		{"untyped rooms only", map[string]any{"generic_search_term": "club", "room_types": []any{nil}}, []string{}},
	} {
		t.Run("filter "+tc.name, func(t *testing.T) {
			pages, resps := publicRoomPages(t, alice, true, 0, tc.filter)
			if got := slices.Concat(pages...); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if resps[0].JSON["total_room_count_estimate"] != float64(len(tc.want)) {
				t.Fatalf("total_room_count_estimate: %s", resps[0])
			}
		})
	}
	if r := anon.Must(200, "GET", "/_matrix/client/v3/publicRooms", nil); len(chunkIDs(t, r)) != 9 {
		t.Fatalf("directory without a limit: %s", r)
	}
	if r := alice.Must(200, "GET", "/_matrix/client/v3/publicRooms?server=localhost&limit=2", nil); len(chunkIDs(t, r)) != 2 {
		t.Fatalf("server=localhost: %s", r)
	}
	if r := alice.Must(200, "POST", "/_matrix/client/v3/publicRooms", map[string]any{"third_party_instance_id": "irc|libera"}); len(chunkIDs(t, r)) != 0 {
		t.Fatalf("a third-party network this server does not have: %s", r)
	}

	for _, tc := range []struct {
		name, method, path string
		c                  *servertest.Client
		body               any
		status             int
		errcode            string
	}{
		// Asked over federation; nobody answers.
		{"another server", "GET", "/_matrix/client/v3/publicRooms?server=elsewhere.example", alice, nil, 502, "M_UNKNOWN"},
		{"another server, POST", "POST", "/_matrix/client/v3/publicRooms?server=elsewhere.example", alice, map[string]any{}, 502, "M_UNKNOWN"},
		{"bad since", "GET", "/_matrix/client/v3/publicRooms?since=garbage", anon, nil, 400, "M_INVALID_PARAM"},
		{"bad since, POST", "POST", "/_matrix/client/v3/publicRooms", alice, map[string]any{"since": "f1.%%%"}, 400, "M_INVALID_PARAM"},
		{"negative limit", "GET", "/_matrix/client/v3/publicRooms?limit=-1", anon, nil, 400, "M_INVALID_PARAM"},
		{"limit not a number", "GET", "/_matrix/client/v3/publicRooms?limit=ten", anon, nil, 400, "M_INVALID_PARAM"},
		{"limit not a number, POST", "POST", "/_matrix/client/v3/publicRooms", alice, map[string]any{"limit": "ten"}, 400, "M_BAD_JSON"},
		{"POST needs an account", "POST", "/_matrix/client/v3/publicRooms", anon, map[string]any{}, 401, "M_MISSING_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantMatrixErr(t, tc.name, tc.c.Do(tc.method, tc.path, tc.body), tc.status, tc.errcode)
		})
	}

	// Unpublishing takes a room off; a room that turns invite-only leaves.
	alice.Must(200, "PUT", listPath(space), map[string]any{"visibility": "private"})
	alice.Must(200, "PUT", roomPath(want[1], "/state/m.room.join_rules/"), map[string]any{"join_rule": "invite"})
	got := chunkIDs(t, anon.Must(200, "GET", "/_matrix/client/v3/publicRooms", nil))
	if slices.Contains(got, space) || slices.Contains(got, want[1]) || len(got) != 7 {
		t.Fatalf("after unpublishing and a join rule change: %v", got)
	}
}

// Spec: "Room Upgrades": the replacement room takes over the old room's
// local aliases and its place in the public room directory.
func TestUpgradeMovesDirectory(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	old := createRoom(t, alice, map[string]any{"room_version": "10", "visibility": "public", "preset": "public_chat", "room_alias_name": "club"})
	alice.Must(200, "PUT", aliasPath("#club-alt:localhost"), map[string]any{"room_id": old})
	repl := alice.Must(200, "POST", roomPath(old, "/upgrade"), map[string]any{"new_version": "12"}).Str("replacement_room")

	for _, a := range []string{"#club:localhost", "#club-alt:localhost"} {
		if r := alice.Must(200, "GET", aliasPath(a), nil); r.Str("room_id") != repl {
			t.Fatalf("%s after the upgrade: %s", a, r)
		}
	}
	if got := roomAliasesOf(t, alice, repl); !slices.Equal(got, []string{"#club-alt:localhost", "#club:localhost"}) {
		t.Fatalf("replacement's aliases: %v", got)
	}
	if got := roomAliasesOf(t, alice, old); len(got) != 0 {
		t.Fatalf("old room's aliases: %v", got)
	}
	if v := alice.Must(200, "GET", listPath(old), nil).Str("visibility"); v != "private" {
		t.Fatalf("old room still published: %s", v)
	}
	if got := chunkIDs(t, alice.Must(200, "GET", "/_matrix/client/v3/publicRooms", nil)); !slices.Equal(got, []string{repl}) {
		t.Fatalf("directory after the upgrade: %v", got)
	}
	if c := stateMap(t, alice, repl)["m.room.canonical_alias|"]; c["alias"] != "#club:localhost" {
		t.Fatalf("replacement's canonical alias: %v", c)
	}

	// The directory is durable.
	s.Restart(t)
	anon := s.Client(t)
	if r := anon.Must(200, "GET", aliasPath("#club:localhost"), nil); r.Str("room_id") != repl {
		t.Fatalf("alias after a restart: %s", r)
	}
	if got := chunkIDs(t, anon.Must(200, "GET", "/_matrix/client/v3/publicRooms", nil)); !slices.Equal(got, []string{repl}) {
		t.Fatalf("directory after a restart: %v", got)
	}
}
