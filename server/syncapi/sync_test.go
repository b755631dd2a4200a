package syncapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"hearth/server/servertest"
)

func createRoom(t testing.TB, c *servertest.Client, body map[string]any) string {
	t.Helper()
	return c.Must(200, "POST", "/_matrix/client/v3/createRoom", body).Str("room_id")
}

var txn int

func send(t *testing.T, c *servertest.Client, roomID, body string) string {
	t.Helper()
	txn++
	return c.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/s%d", url.PathEscape(roomID), txn),
		map[string]any{"msgtype": "m.text", "body": body}).Str("event_id")
}

func syncOnce(t testing.TB, c *servertest.Client, since string, timeoutMS int, extra string) *servertest.Response {
	t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d%s", timeoutMS, extra)
	if since != "" {
		path += "&since=" + url.QueryEscape(since)
	}
	return c.Must(200, "GET", path, nil)
}

func section(r *servertest.Response, kind, roomID string) map[string]any {
	rooms, _ := r.JSON["rooms"].(map[string]any)
	k, _ := rooms[kind].(map[string]any)
	room, _ := k[roomID].(map[string]any)
	return room
}

func timelineEvents(room map[string]any) []map[string]any {
	tl, _ := room["timeline"].(map[string]any)
	var out []map[string]any
	for _, e := range tl["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// Spec: "Syncing": an initial sync has every joined room with its state
// and newest events; an incremental sync with nothing new has no rooms.
func TestInitialAndEmptySync(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"name": "Kitchen"})
	msg := send(t, alice, room, "hello")

	r := syncOnce(t, alice, "", 0, "")
	jr := section(r, "join", room)
	evs := timelineEvents(jr)
	if len(evs) == 0 || evs[len(evs)-1]["event_id"] != msg {
		t.Fatalf("initial timeline: %v", evs)
	}
	if jr["summary"].(map[string]any)["m.joined_member_count"] != 1.0 {
		t.Fatalf("summary: %v", jr["summary"])
	}
	// State plus timeline describe the room: the name is in one of them.
	found := false
	for _, e := range append(jr["state"].(map[string]any)["events"].([]any), jr["timeline"].(map[string]any)["events"].([]any)...) {
		found = found || e.(map[string]any)["type"] == "m.room.name"
	}
	if !found {
		t.Fatal("the room's name is neither in state nor timeline")
	}
	next := r.Str("next_batch")
	r = syncOnce(t, alice, next, 0, "")
	if r.JSON["rooms"] != nil || r.Str("next_batch") != next {
		t.Fatalf("empty incremental sync: %s", r)
	}
}

// A message wakes a waiting sync, which returns it.
func TestLongPollWakes(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	next := syncOnce(t, bob, "", 0, "").Str("next_batch")

	got := make(chan *servertest.Response)
	go func() { got <- syncOnce(t, bob, next, 30000, "") }()
	id := send(t, alice, room, "dinner's ready")
	r := <-got
	evs := timelineEvents(section(r, "join", room))
	if len(evs) != 1 || evs[0]["event_id"] != id {
		t.Fatalf("woken sync: %s", r)
	}
	// An event in a room bob is not in does not wake him (the sync times out empty).
	other := createRoom(t, alice, map[string]any{})
	send(t, alice, other, "private")
	r = syncOnce(t, bob, r.Str("next_batch"), 200, "")
	if r.JSON["rooms"] != nil {
		t.Fatalf("woken by a room bob is not in: %s", r)
	}
}

// A gap: more events than the timeline limit gives limited, and a
// prev_batch from which /messages pages back to exactly the missing ones.
func TestGappySync(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{})
	next := syncOnce(t, alice, "", 0, "").Str("next_batch")
	var sent []string
	for i := range 15 {
		sent = append(sent, send(t, alice, room, fmt.Sprintf("m%d", i)))
	}
	f, _ := json.Marshal(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}})
	r := syncOnce(t, alice, next, 0, "&filter="+url.QueryEscape(string(f)))
	jr := section(r, "join", room)
	tl := jr["timeline"].(map[string]any)
	evs := timelineEvents(jr)
	if tl["limited"] != true || len(evs) != 5 || evs[4]["event_id"] != sent[14] || evs[0]["event_id"] != sent[10] {
		t.Fatalf("gappy timeline: limited %v, %d events", tl["limited"], len(evs))
	}
	page := alice.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/messages?dir=b&limit=10&from="+url.QueryEscape(tl["prev_batch"].(string)), nil)
	chunk := page.JSON["chunk"].([]any)
	if len(chunk) != 10 {
		t.Fatalf("paging back from prev_batch: %d events", len(chunk))
	}
	for i, e := range chunk {
		if e.(map[string]any)["event_id"] != sent[9-i] {
			t.Fatalf("paging back from prev_batch: event %d is %v, want %s", i, e.(map[string]any)["event_id"], sent[9-i])
		}
	}
}

// An invite shows in rooms.invite with stripped state, the join moves the
// room to rooms.join with its full state, and leaving to rooms.leave.
func TestMembershipSections(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"name": "Secret"})
	next := syncOnce(t, bob, "", 0, "").Str("next_batch")

	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/invite", map[string]any{"user_id": "@bob:localhost"})
	r := syncOnce(t, bob, next, 10000, "")
	inv := section(r, "invite", room)
	if inv == nil {
		t.Fatalf("invite not in sync: %s", r)
	}
	types := map[string]bool{}
	for _, e := range inv["invite_state"].(map[string]any)["events"].([]any) {
		types[e.(map[string]any)["type"].(string)] = true
	}
	if !types["m.room.name"] || !types["m.room.member"] || !types["m.room.create"] {
		t.Fatalf("invite_state: %v", types)
	}

	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/join", map[string]any{})
	r = syncOnce(t, bob, r.Str("next_batch"), 10000, "")
	jr := section(r, "join", room)
	if jr == nil {
		t.Fatalf("joined room not in sync: %s", r)
	}
	// The room is new to bob: state plus timeline describe all of it.
	seen := map[string]bool{}
	for _, e := range append(jr["state"].(map[string]any)["events"].([]any), jr["timeline"].(map[string]any)["events"].([]any)...) {
		seen[e.(map[string]any)["type"].(string)] = true
	}
	if !seen["m.room.create"] || !seen["m.room.name"] || !seen["m.room.power_levels"] {
		t.Fatalf("joined room's state: %v", seen)
	}

	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/leave", map[string]any{})
	send(t, alice, room, "after bob left")
	r = syncOnce(t, bob, r.Str("next_batch"), 10000, "")
	lr := section(r, "leave", room)
	evs := timelineEvents(lr)
	if lr == nil || evs[len(evs)-1]["type"] != "m.room.member" {
		t.Fatalf("leave section: %s", r)
	}
	for _, e := range evs {
		if c, _ := e["content"].(map[string]any); c["body"] == "after bob left" {
			t.Fatal("a left user was sent a later message")
		}
	}
}

// Bad tokens and filters get the spec's errors, not a 500.
func TestSyncBadInput(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	for _, tc := range []struct{ path, errcode string }{
		{"/_matrix/client/v3/sync?since=garbage", "M_INVALID_PARAM"},
		{"/_matrix/client/v3/sync?since=s999999", "M_INVALID_PARAM"},
		{"/_matrix/client/v3/sync?timeout=soon", "M_INVALID_PARAM"},
		{"/_matrix/client/v3/sync?filter=%7Bnot-json", "M_BAD_JSON"},
		{"/_matrix/client/v3/sync?filter=12345", "M_NOT_FOUND"},
	} {
		if r := alice.Do("GET", tc.path, nil); r.Status/100 != 4 || r.Errcode() != tc.errcode {
			t.Errorf("%s: %s", tc.path, r)
		}
	}
	// Filters: upload, read back, use by ID; another user's are not theirs.
	id := alice.Must(200, "POST", "/_matrix/client/v3/user/@alice:localhost/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1}}}).Str("filter_id")
	got := alice.Must(200, "GET", "/_matrix/client/v3/user/@alice:localhost/filter/"+id, nil)
	if got.JSON["room"].(map[string]any)["timeline"].(map[string]any)["limit"] != 1.0 {
		t.Fatalf("filter read back: %s", got)
	}
	room := createRoom(t, alice, map[string]any{})
	send(t, alice, room, "x")
	if evs := timelineEvents(section(syncOnce(t, alice, "", 0, "&filter="+id), "join", room)); len(evs) != 1 {
		t.Fatalf("filter by ID: %d events", len(evs))
	}
	if r := bob.Do("GET", "/_matrix/client/v3/user/@alice:localhost/filter/"+id, nil); r.Status != 403 {
		t.Fatalf("reading another user's filter: %s", r)
	}
	if r := alice.Do("POST", "/_matrix/client/v3/user/@alice:localhost/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": "many"}}}); r.Status != 400 {
		t.Fatalf("bad filter upload: %s", r)
	}
}

// A rejected invite shows in rooms.leave with the leave event, so clients
// drop the invite (Complement TestLeaveEventInviteRejection).
func TestRejectedInviteInLeave(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"invite": []string{"@bob:localhost"}})
	since := syncOnce(t, bob, "", 0, "").Str("next_batch")
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/leave", map[string]any{})
	r := syncOnce(t, bob, since, 10000, "")
	evs := timelineEvents(section(r, "leave", room))
	if len(evs) != 1 || evs[0]["type"] != "m.room.member" || evs[0]["content"].(map[string]any)["membership"] != "leave" {
		t.Fatalf("rejected invite in sync: %s", r)
	}
	if section(r, "invite", room) != nil {
		t.Fatal("the rejected invite is still offered")
	}
}

// A knock shows in rooms.knock with stripped state, and moves to
// rooms.invite when a member answers it with an invite.
func TestKnockInSync(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"room_version": "7", "name": "Club", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
	}})
	since := syncOnce(t, bob, "", 0, "").Str("next_batch")
	bob.Must(200, "POST", "/_matrix/client/v3/knock/"+url.PathEscape(room), map[string]any{})
	r := syncOnce(t, bob, since, 10000, "")
	k := section(r, "knock", room)
	if k == nil || len(k["knock_state"].(map[string]any)["events"].([]any)) < 2 {
		t.Fatalf("knock in sync: %s", r)
	}
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/invite", map[string]any{"user_id": "@bob:localhost"})
	r = syncOnce(t, bob, r.Str("next_batch"), 10000, "")
	if section(r, "invite", room) == nil || section(r, "knock", room) != nil {
		t.Fatalf("after the invite: %s", r)
	}
}

// Forgetting a room right after leaving does not hide the leave from a
// sync that started before it (Complement TestRoomForget).
func TestForgottenRoomLeaveStillSynced(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{})
	before := syncOnce(t, alice, "", 0, "").Str("next_batch")
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/leave", map[string]any{})
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/forget", nil)
	r := syncOnce(t, alice, before, 0, "")
	if section(r, "leave", room) == nil {
		t.Fatalf("leave of a forgotten room missing from an older sync: %s", r)
	}
	if r := syncOnce(t, alice, "", 0, "&filter="+url.QueryEscape(`{"room":{"include_leave":true}}`)); section(r, "leave", room) != nil {
		t.Fatal("a forgotten room came back in an initial sync")
	}
}

// A timeline limit of 0 gives an empty, limited timeline and the whole
// state, with a prev_batch to page back from (Complement
// TestArchivedRoomsHistory "timeline is empty").
func TestZeroTimelineLimit(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"name": "Quiet"})
	send(t, alice, room, "one")
	r := syncOnce(t, alice, "", 0, "&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":0}}}`))
	jr := section(r, "join", room)
	tl := jr["timeline"].(map[string]any)
	if len(tl["events"].([]any)) != 0 || tl["limited"] != true || tl["prev_batch"] == "" {
		t.Fatalf("timeline with limit 0: %v", tl)
	}
	page := alice.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/messages?dir=b&limit=1&from="+url.QueryEscape(tl["prev_batch"].(string)), nil)
	if c := page.JSON["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["content"].(map[string]any)["body"] != "one" {
		t.Fatalf("paging back from prev_batch: %s", page)
	}
	names := 0
	for _, e := range jr["state"].(map[string]any)["events"].([]any) {
		if e.(map[string]any)["type"] == "m.room.name" {
			names++
		}
	}
	if names != 1 {
		t.Fatal("the state lacks the room name")
	}
}

// A state filter applies to the syncing user's own member event too
// (only lazy-loaded members bring it regardless, as Synapse does): bob,
// who left, filters state to a custom type and gets none of it, the
// custom state being in his timeline.
func TestStateFilterAppliesToOwnMembership(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	f, _ := json.Marshal(map[string]any{"room": map[string]any{
		"timeline": map[string]any{"types": []string{"m.room.message", "a.madeup"}},
		"state":    map[string]any{"types": []string{"a.madeup"}}, "include_leave": true}})
	room := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	rp := "/_matrix/client/v3/rooms/" + url.PathEscape(room)
	bob.Must(200, "POST", rp+"/join", map[string]any{})
	alice.Must(200, "PUT", rp+"/send/m.room.message/1", map[string]any{"msgtype": "m.text", "body": "before"})
	alice.Must(200, "PUT", rp+"/state/a.madeup/", map[string]any{"my_key": "before"})
	bob.Must(200, "POST", rp+"/leave", map[string]any{})
	r := bob.Must(200, "GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(string(f)), nil)
	left, _ := r.JSON["rooms"].(map[string]any)["leave"].(map[string]any)[room].(map[string]any)
	if left == nil {
		t.Fatalf("the left room is missing: %s", r)
	}
	if st, _ := left["state"].(map[string]any)["events"].([]any); len(st) != 0 {
		t.Fatalf("state of the left room, filtered to a.madeup (in the timeline): %v", st)
	}
}

// The room summary's m.heroes (spec: "the first 5 members of the room,
// ordered by stream ordering, which are joined or invited", never the
// syncing user, and "when no joined or invited members are available",
// the banned and left): in a room without name or canonical alias, and
// none in a named one.
func TestRoomSummaryHeroes(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	// Registered so that the order of their user IDs is not the order
	// they join in.
	names := []string{"zed", "yan", "xia", "wes", "vic", "uma", "tom"}
	users := map[string]*servertest.Client{}
	for _, n := range append(names, "host") {
		users[n] = s.Register(t, n, "pw")
	}
	host := users["host"]
	heroesOf := func(c *servertest.Client, roomID string) []any {
		t.Helper()
		sum, _ := section(syncOnce(t, c, "", 0, ""), "join", roomID)["summary"].(map[string]any)
		h, _ := sum["m.heroes"].([]any)
		return h
	}
	ids := func(ns ...string) []any {
		var out []any
		for _, n := range ns {
			out = append(out, users[n].UserID)
		}
		return out
	}

	room := createRoom(t, host, map[string]any{"preset": "public_chat"})
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(room)
	users["zed"].Must(200, "POST", path+"/join", map[string]any{})
	users["yan"].Must(200, "POST", path+"/join", map[string]any{})
	host.Must(200, "POST", path+"/invite", map[string]any{"user_id": users["tom"].UserID})
	for _, n := range []string{"xia", "wes", "vic", "uma"} {
		users[n].Must(200, "POST", path+"/join", map[string]any{})
	}
	users["zed"].Must(200, "POST", path+"/leave", map[string]any{})
	if got, want := heroesOf(users["uma"], room), ids("host", "yan", "tom", "xia", "wes"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("uma's heroes: %v, want %v", got, want)
	}

	// Everyone else gone: the heroes are who left, in the stream order of
	// their leaves.
	lone := createRoom(t, host, map[string]any{"preset": "public_chat"})
	lonePath := "/_matrix/client/v3/rooms/" + url.PathEscape(lone)
	for _, n := range []string{"wes", "xia"} {
		users[n].Must(200, "POST", lonePath+"/join", map[string]any{})
	}
	for _, n := range []string{"xia", "wes"} {
		users[n].Must(200, "POST", lonePath+"/leave", map[string]any{})
	}
	if got, want := heroesOf(host, lone), ids("xia", "wes"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("host's heroes of a room everyone else left: %v, want %v", got, want)
	}

	named := createRoom(t, host, map[string]any{"preset": "public_chat", "name": "Porch"})
	users["vic"].Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(named)+"/join", map[string]any{})
	if got := heroesOf(host, named); got != nil {
		t.Errorf("heroes of a named room: %v", got)
	}
	// A name set to nothing names nothing (the spec: "unset or empty").
	host.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(named)+"/state/m.room.name/", map[string]any{"name": ""})
	if got, want := heroesOf(host, named), ids("vic"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("heroes of a room whose name was emptied: %v, want %v", got, want)
	}
}
