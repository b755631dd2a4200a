package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

func v1Path(roomID, rest string) string {
	return "/_matrix/client/v1/rooms/" + url.PathEscape(roomID) + rest
}

// relationsOf returns unsigned["m.relations"] of an event.
func relationsOf(ev map[string]any) map[string]any {
	u, _ := ev["unsigned"].(map[string]any)
	rels, _ := u["m.relations"].(map[string]any)
	return rels
}

func reaction(parent, key string) map[string]any {
	return map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": parent, "key": key}}
}

func edit(parent, body string) map[string]any {
	return map[string]any{
		"msgtype": "m.text", "body": "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": parent},
	}
}

func threadReply(root, body string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": body, "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}
}

// relChunkIDs returns the event IDs of a chunk.
func relChunkIDs(r *servertest.Response) []string {
	var ids []string
	for _, e := range r.JSON["chunk"].([]any) {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	return ids
}

// Spec: "Event replacements" and "Event annotations and reactions": the
// server bundles the newest valid edit without replacing the content,
// does not aggregate reactions, refuses a duplicate reaction until the
// first is redacted, and forgets redacted edits and reactions.
func TestEditsAndReactions(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})

	orig := send(t, alice, room, "I like cake")
	edit1 := sendEvent(t, alice, room, "m.room.message", edit(orig, "I like chocolate cake"))
	edit2 := sendEvent(t, alice, room, "m.room.message", edit(orig, "I like all cake"))
	sendEvent(t, bob, room, "m.room.message", edit(orig, "bob may not edit alice")) // invalid: another sender
	// The newest edit is the one with the greatest origin_server_ts, then
	// event ID; two sends may share a millisecond.
	newest := func(ids ...string) string {
		best, bestTS := "", 0.0
		for _, id := range ids {
			e := getEvent(t, alice, room, id)
			ts := e.JSON["origin_server_ts"].(float64)
			if best == "" || ts > bestTS || ts == bestTS && id > best {
				best, bestTS = id, ts
			}
		}
		return best
	}

	got := getEvent(t, bob, room, orig)
	if body := got.JSON["content"].(map[string]any)["body"]; body != "I like cake" {
		t.Fatalf("the server replaced the edited content: %v", body)
	}
	replace, _ := relationsOf(got.JSON)["m.replace"].(map[string]any)
	if want := newest(edit1, edit2); replace["event_id"] != want || replace["sender"] != "@alice:localhost" || replace["origin_server_ts"] == nil {
		t.Fatalf("m.replace = %v, want %s", replace, want)
	}
	if replace["content"].(map[string]any)["m.new_content"] == nil {
		t.Fatalf("bundled edit lacks its content: %v", replace)
	}

	// Reactions are counted by clients, not bundled; the same one twice is
	// refused until the first is redacted.
	thumbs := sendEvent(t, bob, room, "m.reaction", reaction(orig, "👍"))
	if r := bob.Do("PUT", roomPath(room, "/send/m.reaction/dup1"), reaction(orig, "👍")); r.Status != 400 || r.Errcode() != "M_DUPLICATE_ANNOTATION" {
		t.Fatalf("duplicate reaction: %s", r)
	}
	sendEvent(t, alice, room, "m.reaction", reaction(orig, "👍"))
	sendEvent(t, bob, room, "m.reaction", reaction(orig, "🎂"))
	if _, ok := relationsOf(getEvent(t, bob, room, orig).JSON)["m.annotation"]; ok {
		t.Fatal("reactions are bundled")
	}
	annotations := v1Path(room, "/relations/"+url.PathEscape(orig)+"/m.annotation")
	if n := len(relChunkIDs(bob.Must(200, "GET", annotations+"?limit=50", nil))); n != 3 {
		t.Fatalf("%d reactions, want 3", n)
	}
	if n := len(relChunkIDs(bob.Must(200, "GET", annotations+"/m.reaction?limit=50", nil))); n != 3 {
		t.Fatalf("%d m.reaction reactions, want 3", n)
	}
	if n := len(relChunkIDs(bob.Must(200, "GET", annotations+"/m.room.message?limit=50", nil))); n != 0 {
		t.Fatalf("%d m.room.message annotations, want 0", n)
	}
	bob.Must(200, "PUT", redactPath(room, thumbs, "unreact"), map[string]any{})
	if ids := relChunkIDs(bob.Must(200, "GET", annotations+"?limit=50", nil)); len(ids) != 2 || slices.Contains(ids, thumbs) {
		t.Fatalf("a redacted reaction is still listed: %v", ids)
	}
	sendEvent(t, bob, room, "m.reaction", reaction(orig, "👍")) // allowed again

	// References are bundled by event ID.
	ref := sendEvent(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "see above",
		"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": orig}})
	refs, _ := relationsOf(getEvent(t, alice, room, orig).JSON)["m.reference"].(map[string]any)
	if chunk, _ := refs["chunk"].([]any); len(chunk) != 1 || chunk[0].(map[string]any)["event_id"] != ref {
		t.Fatalf("m.reference = %v", refs)
	}

	// Redacting the newest edit falls back to the other; redacting the
	// original drops the edit from its bundle.
	latest := newest(edit1, edit2)
	other := edit1
	if latest == edit1 {
		other = edit2
	}
	alice.Must(200, "PUT", redactPath(room, latest, "unedit"), map[string]any{})
	replace, _ = relationsOf(getEvent(t, bob, room, orig).JSON)["m.replace"].(map[string]any)
	if replace["event_id"] != other {
		t.Fatalf("after redacting the newest edit, m.replace = %v, want %s", replace, other)
	}
	alice.Must(200, "PUT", redactPath(room, orig, "unsay"), map[string]any{})
	if _, ok := relationsOf(getEvent(t, bob, room, orig).JSON)["m.replace"]; ok {
		t.Fatal("a redacted event still bundles its edit")
	}

	// A relation to an unknown event is refused.
	if r := bob.Do("PUT", roomPath(room, "/send/m.reaction/unknown1"), reaction("$nope", "x")); r.Status != 400 {
		t.Fatalf("relation to unknown event: %s", r)
	}
}

// Spec: "Threading": the thread root bundles the thread's latest event
// (with its own aggregations), the reply count and whether the reader
// took part; /threads lists threads by latest reply, optionally only
// those the reader took part in.
func TestThreads(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	carol := s.Register(t, "carol", "pw")
	dave := s.Register(t, "dave", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	for _, c := range []*servertest.Client{bob, carol, dave} {
		c.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	}

	root1 := send(t, alice, room, "dinner on friday?")
	root2 := send(t, bob, room, "who has the car keys?")
	sendEvent(t, bob, room, "m.room.message", threadReply(root1, "yes"))
	sendEvent(t, carol, room, "m.room.message", threadReply(root2, "me"))
	last := sendEvent(t, carol, room, "m.room.message", threadReply(root1, "I'll bring cake"))
	lastEdit := sendEvent(t, carol, room, "m.room.message", edit(last, "I'll bring two cakes"))

	for _, tc := range []struct {
		name         string
		c            *servertest.Client
		participated bool
	}{
		{"root sender", alice, true},
		{"replier", bob, true},
		{"bystander", dave, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			thread, _ := relationsOf(getEvent(t, tc.c, room, root1).JSON)["m.thread"].(map[string]any)
			if thread["count"] != 2.0 || thread["current_user_participated"] != tc.participated {
				t.Fatalf("m.thread = %v", thread)
			}
			latest, _ := thread["latest_event"].(map[string]any)
			if latest["event_id"] != last || latest["content"].(map[string]any)["body"] != "I'll bring cake" {
				t.Fatalf("latest_event = %v", latest)
			}
			if e, _ := relationsOf(latest)["m.replace"].(map[string]any); e["event_id"] != lastEdit {
				t.Fatalf("latest_event lacks its own aggregation: %v", latest)
			}
		})
	}
	// /messages bundles too.
	for _, e := range alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=20"), nil).JSON["chunk"].([]any) {
		ev := e.(map[string]any)
		if ev["event_id"] == root1 && relationsOf(ev)["m.thread"] == nil {
			t.Fatalf("/messages root lacks m.thread: %v", ev)
		}
	}

	// No thread off an event that itself relates to another.
	if r := bob.Do("PUT", roomPath(room, "/send/m.room.message/thr1"), threadReply(last, "nested")); r.Status != 400 || r.Errcode() != "M_UNKNOWN" {
		t.Fatalf("thread off a thread reply: %s", r)
	}

	// root1 had the latest reply, so it comes first.
	if ids := relChunkIDs(dave.Must(200, "GET", v1Path(room, "/threads"), nil)); !slices.Equal(ids, []string{root1, root2}) {
		t.Fatalf("threads = %v, want %v", ids, []string{root1, root2})
	}
	first := dave.Must(200, "GET", v1Path(room, "/threads?limit=1"), nil)
	next := first.Str("next_batch")
	if ids := relChunkIDs(first); !slices.Equal(ids, []string{root1}) || next == "" {
		t.Fatalf("first page: %s", first)
	}
	second := dave.Must(200, "GET", v1Path(room, "/threads?limit=1&from="+url.QueryEscape(next)), nil)
	if ids := relChunkIDs(second); !slices.Equal(ids, []string{root2}) || second.Str("next_batch") != "" {
		t.Fatalf("second page: %s", second)
	}
	if thread := relationsOf(second.JSON["chunk"].([]any)[0].(map[string]any))["m.thread"]; thread == nil {
		t.Fatal("/threads roots lack their aggregation")
	}
	for _, tc := range []struct {
		c    *servertest.Client
		want []string
	}{
		{alice, []string{root1}},
		{bob, []string{root1, root2}},
		{carol, []string{root1, root2}},
		{dave, nil},
	} {
		if ids := relChunkIDs(tc.c.Must(200, "GET", v1Path(room, "/threads?include=participated"), nil)); !slices.Equal(ids, tc.want) {
			t.Errorf("%s participated in %v, want %v", tc.c.UserID, ids, tc.want)
		}
	}
	// A new reply moves root2 to the front.
	sendEvent(t, dave, room, "m.room.message", threadReply(root2, "found them"))
	if ids := relChunkIDs(dave.Must(200, "GET", v1Path(room, "/threads"), nil)); !slices.Equal(ids, []string{root2, root1}) {
		t.Fatalf("after a reply to root2: %v", ids)
	}
	for _, tc := range []struct{ query, errcode string }{
		{"?include=some", "M_INVALID_PARAM"},
		{"?limit=0", "M_INVALID_PARAM"},
		{"?from=garbage", "M_INVALID_PARAM"},
	} {
		if r := dave.Do("GET", v1Path(room, "/threads"+tc.query), nil); r.Status != 400 || r.Errcode() != tc.errcode {
			t.Errorf("threads%s: %s", tc.query, r)
		}
	}
}

// Spec: "Relationships API": newest first by default, pages joined by
// next_batch with nothing lost or repeated, dir=f, to, recurse, and
// history visibility for someone who left.
func TestRelationsPagination(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})

	root := send(t, alice, room, "vote: where do we go?")
	var all []string // oldest first
	for i := range 7 {
		all = append(all, sendEvent(t, alice, room, "m.reaction", reaction(root, fmt.Sprint(i))))
	}
	base := v1Path(room, "/relations/"+url.PathEscape(root))

	var got []string
	var pages int
	for from := ""; ; pages++ {
		q := "?limit=3"
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		r := bob.Must(200, "GET", base+q, nil)
		got = append(got, relChunkIDs(r)...)
		if from = r.Str("next_batch"); from == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := slices.Clone(all)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("backward pages = %v, want %v", got, want)
	}
	fwd := bob.Must(200, "GET", base+"?dir=f&limit=4", nil)
	if !slices.Equal(relChunkIDs(fwd), all[:4]) {
		t.Fatalf("dir=f = %v", relChunkIDs(fwd))
	}
	rest := bob.Must(200, "GET", base+"?dir=f&limit=10&from="+url.QueryEscape(fwd.Str("next_batch")), nil)
	if !slices.Equal(relChunkIDs(rest), all[4:]) || rest.Str("prev_batch") != fwd.Str("next_batch") {
		t.Fatalf("dir=f second page: %s", rest)
	}
	// to stops before the event it names.
	if ids := relChunkIDs(bob.Must(200, "GET", base+"?limit=10&to="+url.QueryEscape(fwd.Str("next_batch")), nil)); !slices.Equal(ids, want[:3]) {
		t.Fatalf("to = %v, want %v", ids, want[:3])
	}

	// recurse follows relations of relations.
	reply := sendEvent(t, bob, room, "m.room.message", threadReply(root, "the beach"))
	onReply := sendEvent(t, alice, room, "m.reaction", reaction(reply, "🏖"))
	flat := bob.Must(200, "GET", base+"?limit=50", nil)
	if slices.Contains(relChunkIDs(flat), onReply) || flat.JSON["recursion_depth"] != nil {
		t.Fatalf("without recurse: %s", flat)
	}
	deep := bob.Must(200, "GET", base+"?limit=50&recurse=true", nil)
	if ids := relChunkIDs(deep); !slices.Contains(ids, onReply) || !slices.Contains(ids, reply) || deep.JSON["recursion_depth"] != 3.0 {
		t.Fatalf("with recurse: %s", deep)
	}
	// A filter applies at every level: the reaction on the reply comes
	// only through an m.thread event.
	if ids := relChunkIDs(bob.Must(200, "GET", base+"/m.annotation?limit=50&recurse=true", nil)); slices.Contains(ids, onReply) {
		t.Fatalf("filtered recursion went through a non-matching event: %v", ids)
	}

	// Bob leaves: he sees the relations up to then, and nothing of events
	// sent after.
	bob.Must(200, "POST", roomPath(room, "/leave"), map[string]any{})
	late := sendEvent(t, alice, room, "m.reaction", reaction(root, "late"))
	if ids := relChunkIDs(bob.Must(200, "GET", base+"?limit=50", nil)); slices.Contains(ids, late) || !slices.Contains(ids, all[0]) {
		t.Fatalf("after leaving: %v", ids)
	}
	if r := bob.Do("GET", v1Path(room, "/relations/"+url.PathEscape(late)), nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("relations of an event after leaving: %s", r)
	}
	stranger := s.Register(t, "stranger", "pw")
	if r := stranger.Do("GET", base, nil); r.Status != 403 {
		t.Fatalf("stranger: %s", r)
	}
	for _, q := range []string{"?dir=x", "?limit=-1", "?from=garbage", "?recurse=maybe"} {
		if r := alice.Do("GET", base+q, nil); r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
			t.Errorf("relations%s: %s", q, r)
		}
	}
	if r := alice.Do("GET", v1Path(room, "/relations/$nope"), nil); r.Status != 404 {
		t.Fatalf("relations of unknown event: %s", r)
	}
}
