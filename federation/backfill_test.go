package federation_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/servertest"
)

// pageBack pages c back through a room's /messages, limit events a page,
// from the newest to the start (no end token), and returns the bodies of
// the messages seen, oldest first, and the number of pages.
func pageBack(t *testing.T, c *servertest.Client, roomID, from string, limit int) ([]string, int) {
	t.Helper()
	var got []string
	pages := 0
	for pages < 200 {
		path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=%d", url.PathEscape(roomID), limit)
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := c.Must(200, "GET", path, nil)
		pages++
		chunk, _ := r.JSON["chunk"].([]any)
		for _, ev := range chunk {
			if get(ev, "type") == "m.room.message" {
				got = append(got, fmt.Sprint(get(ev, "content", "body")))
			}
		}
		if from = r.Str("end"); from == "" || len(chunk) == 0 {
			break
		}
	}
	slices.Reverse(got)
	return got, pages
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// A late joiner pages back through a remote history longer than one
// backfill request brings (a server sends at most 100 events a request):
// every page keeps fetching until it is full or the room's start is
// reached, so a client asking for big pages does not stop at the first
// hundred.
func TestBackfillLongHistoryBigPages(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	want := numbered("filler", 250)
	for _, body := range want {
		send(alice, roomID, body)
	}
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	got, _ := pageBack(t, bob, roomID, "", 120)
	if !slices.Equal(got, want) {
		t.Fatalf("bob's history has %d of the %d messages: first %q, last %q", len(got), len(want), first(got), last(got))
	}
	// The room's start was reached: the create event is in bob's history.
	r := bob.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=f&limit=1", nil)
	chunk, _ := r.JSON["chunk"].([]any)
	if len(chunk) != 1 || get(chunk[0], "type") != "m.room.create" {
		t.Fatalf("bob's first event: %v, want the create event", chunk)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// A user who left a remote room and joins it again reads what was said
// while they were away: their server, out of the room meanwhile, has a
// gap before the new join that /messages fills from the room's other
// servers, as history visibility (shared) lets them see.
func TestBackfillAfterRejoin(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := sharedRoom(t, a, alice, bob)
	before := numbered("before", 3)
	for _, body := range before {
		send(alice, roomID, body)
	}
	waitBodies(t, bob, roomID, last(before))
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "leave")
	away := numbered("away", 25)
	for _, body := range away {
		send(alice, roomID, body)
	}
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	for _, limit := range []int{10, 100} {
		got, _ := pageBack(t, bob, roomID, "", limit)
		if want := append(slices.Clone(before), away...); !slices.Equal(got, want) {
			t.Fatalf("limit %d: bob's history after rejoining: %q, want %q", limit, got, want)
		}
	}
}
