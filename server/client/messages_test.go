package client_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

func chunkBodies(r *servertest.Response) []string {
	var out []string
	for _, e := range r.JSON["chunk"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "m.room.message" {
			out = append(out, ev["content"].(map[string]any)["body"].(string))
		}
	}
	return out
}

// Spec: GET /rooms/{roomId}/messages: paging both ways with from, end and
// to, and filters.
func TestMessagesPaging(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	for i := range 25 {
		c := alice
		if i%5 == 0 {
			c = bob
		}
		send(t, c, room, fmt.Sprintf("m%02d", i))
	}

	// Backward from the end in pages of 10 reaches every message once, newest first.
	var got []string
	from := ""
	for range 20 {
		last := from
		path := roomPath(room, "/messages?dir=b&limit=10")
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := alice.Must(200, "GET", path, nil)
		got = append(got, chunkBodies(r)...)
		from = r.Str("end")
		if len(r.JSON["chunk"].([]any)) == 0 {
			from = last
			break
		}
	}
	if len(got) != 25 || got[0] != "m24" || got[24] != "m00" {
		t.Fatalf("backward paging: %d messages, %v", len(got), got)
	}
	// The page that reached the room's start still had an end token, as
	// Synapse's do (clients and Complement read it); the one after it is
	// empty and has none.
	if from != "" {
		r := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=10&from="+url.QueryEscape(from)), nil)
		if len(r.JSON["chunk"].([]any)) != 0 || r.Str("end") != "" {
			t.Fatalf("past the start: %s", r)
		}
	} else {
		t.Fatal("the last page with events had no end token")
	}

	// Forward from the start: oldest first, the create event before any message.
	r := alice.Must(200, "GET", roomPath(room, "/messages?dir=f&limit=5"), nil)
	first := r.JSON["chunk"].([]any)[0].(map[string]any)
	if first["type"] != "m.room.create" {
		t.Fatalf("forward paging starts with %v", first["type"])
	}

	// to stops the page at a token.
	mid := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=10"), nil)
	to := mid.Str("end")
	r = alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=50&to="+url.QueryEscape(to)), nil)
	if n := len(r.JSON["chunk"].([]any)); n != 10 || r.Str("end") != "" {
		t.Fatalf("to: %d events, end %q", n, r.Str("end"))
	}

	// A filter by sender, and lazy-loaded members for the chunk's senders only.
	f, _ := json.Marshal(map[string]any{"senders": []string{"@bob:localhost"}, "lazy_load_members": true, "types": []string{"m.room.message"}})
	r = alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=50&filter="+url.QueryEscape(string(f))), nil)
	if b := chunkBodies(r); len(b) != 5 || !slices.Equal(b, []string{"m20", "m15", "m10", "m05", "m00"}) {
		t.Fatalf("sender filter: %v", b)
	}
	state, _ := r.JSON["state"].([]any)
	if len(state) != 1 || state[0].(map[string]any)["state_key"] != "@bob:localhost" {
		t.Fatalf("lazy-loaded members: %v", state)
	}
	if r := alice.Do("GET", roomPath(room, "/messages?dir=b&filter=nonsense"), nil); r.Status != 400 {
		t.Fatalf("bad filter: %s", r)
	}
}

// Spec: GET /rooms/{roomId}/context/{eventId}.
func TestEventContext(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"name": "Context"})
	var ids []string
	for i := range 9 {
		ids = append(ids, send(t, alice, room, fmt.Sprintf("c%d", i)))
	}
	r := alice.Must(200, "GET", roomPath(room, "/context/"+url.PathEscape(ids[4])+"?limit=4"), nil)
	if r.JSON["event"].(map[string]any)["event_id"] != ids[4] {
		t.Fatalf("context event: %s", r)
	}
	before, after := r.JSON["events_before"].([]any), r.JSON["events_after"].([]any)
	if len(before) != 2 || before[0].(map[string]any)["event_id"] != ids[3] || len(after) != 2 || after[0].(map[string]any)["event_id"] != ids[5] {
		t.Fatalf("context around: before %v after %v", before, after)
	}
	hasName := false
	for _, e := range r.JSON["state"].([]any) {
		hasName = hasName || e.(map[string]any)["type"] == "m.room.name"
	}
	if !hasName || r.Str("start") == "" || r.Str("end") == "" {
		t.Fatalf("context state and tokens: %s", r)
	}
	// Paging on from start continues before events_before.
	more := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=1&from="+url.QueryEscape(r.Str("start"))), nil)
	if chunkBodies(more)[0] != "c1" {
		t.Fatalf("paging from the context's start: %v", chunkBodies(more))
	}
	if r := alice.Do("GET", roomPath(room, "/context/$nope"), nil); r.Status != 404 {
		t.Fatalf("context of an unknown event: %s", r)
	}
}

// /context's end is the position just after the last event it gives:
// paging back from it gives that event again (clients and Complement's
// jump-to-date test page back from it), paging forward does not.
func TestContextEndToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	send(t, alice, room, "A")
	b := send(t, alice, room, "B")
	send(t, alice, room, "C")
	ctx := alice.Must(200, "GET", roomPath(room, "/context/"+url.PathEscape(b)+"?limit=0"), nil)
	end := url.QueryEscape(ctx.Str("end"))
	if got := chunkBodies(alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=2&from="+end), nil)); !slices.Equal(got, []string{"B", "A"}) {
		t.Errorf("back from /context's end: %v, want B then A", got)
	}
	if got := chunkBodies(alice.Must(200, "GET", roomPath(room, "/messages?dir=f&limit=5&from="+end), nil)); !slices.Equal(got, []string{"C"}) {
		t.Errorf("forward from /context's end: %v, want C", got)
	}
	start := url.QueryEscape(ctx.Str("start"))
	if got := chunkBodies(alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=1&from="+start), nil)); !slices.Equal(got, []string{"A"}) {
		t.Errorf("back from /context's start: %v, want A", got)
	}
}
