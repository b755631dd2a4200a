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

// syncTimeline returns the timeline of a joined room in a sync response.
func syncTimeline(resp map[string]any, roomID string) map[string]any {
	tl, _ := get(resp, "rooms", "join", roomID, "timeline").(map[string]any)
	return tl
}

// timelineEvents returns the senders and bodies of a sync timeline's
// messages.
func timelineEvents(tl map[string]any) (senders, bodies []string) {
	evs, _ := tl["events"].([]any)
	for _, ev := range evs {
		if get(ev, "type") == "m.room.message" {
			senders = append(senders, fmt.Sprint(get(ev, "sender")))
			bodies = append(bodies, fmt.Sprint(get(ev, "content", "body")))
		}
	}
	return senders, bodies
}

// When an event comes whose prev events its server could not all give
// (get_missing_events brings the newest 20; the state is asked for behind
// them), the timeline has a gap. A sync across it is limited and starts
// after the gap, never joining the events on either side as if nothing
// were between them, and its prev_batch pages back into the gap, which
// /messages fills from the room's other servers.
func TestSyncTimelineGap(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := c.Register(t, "carol", "pw-carol")
	roomID := sharedRoom(t, a, alice, bob)
	carol.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	waitMembership(t, alice, roomID, carol.UserID, "join")
	waitMembership(t, bob, roomID, carol.UserID, "join")

	filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
	since := alice.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, nil).Str("next_batch")
	send(alice, roomID, "before the gap")
	waitBodies(t, carol, roomID, "before the gap")

	// A does not hear from C: carol's messages reach B only, and A learns
	// of them from bob's reply, which follows them.
	a.Partition(c)
	unseen := numbered("unseen", 30)
	for _, body := range unseen {
		send(carol, roomID, body)
	}
	waitBodies(t, bob, roomID, last(unseen))
	send(bob, roomID, "reply")

	// Incremental syncs as the events arrive: carol's messages come in
	// a limited batch, never in one that also has alice's.
	limited := false
	syncUntil(t, alice, since, "bob's reply", func(resp map[string]any) bool {
		tl := syncTimeline(resp, roomID)
		limited = limited || tl["limited"] == true
		senders, bodies := timelineEvents(tl)
		for _, sender := range senders {
			if limited && sender == alice.UserID || !limited && sender == carol.UserID {
				t.Fatalf("a batch (limited: %v) has %q from %s", tl["limited"], bodies, sender)
			}
		}
		return slices.Contains(bodies, "reply")
	})
	if !limited {
		t.Fatal("no batch was limited")
	}

	// Once all is stored: one limited batch, after the gap.
	resp := alice.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), nil).JSON
	tl := syncTimeline(resp, roomID)
	senders, bodies := timelineEvents(tl)
	if tl["limited"] != true || slices.Contains(senders, alice.UserID) || last(bodies) != "reply" {
		t.Fatalf("sync across the gap: limited %v, %q", tl["limited"], bodies)
	}
	// Paging back from its prev_batch fills the gap.
	history, _ := pageBack(t, alice, roomID, fmt.Sprint(tl["prev_batch"]), 10)
	history = append(history, bodies...)
	want := append(append([]string{"before the gap"}, unseen...), "reply")
	if !slices.Equal(history, want) {
		t.Fatalf("alice's history across the gap: %q, want %q", history, want)
	}
}

// Events that arrive late from another server (after a netsplit) come
// down /sync after events we had earlier, though they sort before them
// topologically. Paging back from the sync's prev_batch must still give
// those earlier events, not skip to what sorts before the late one.
func TestNetworkPartitionOrdering(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	dave := a.Register(t, "dave", "pw-dave")
	charlie := b.Register(t, "charlie", "pw-charlie")
	roomID := sharedRoom(t, a, alice, charlie)
	dave.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{})
	waitMembership(t, charlie, roomID, dave.UserID, "join")
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":4}}}`)
	since := dave.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, nil).Str("next_batch")

	a.Partition(b)
	send(charlie, roomID, "late")
	early := numbered("early", 4)
	for _, body := range early {
		send(alice, roomID, body)
	}
	a.Heal(b)
	waitBodies(t, alice, roomID, "late")
	after := numbered("after", 3)
	for _, body := range after {
		send(alice, roomID, body)
	}

	resp := dave.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), nil).JSON
	tl := syncTimeline(resp, roomID)
	if _, bodies := timelineEvents(tl); !slices.Equal(bodies, append([]string{"late"}, after...)) {
		t.Fatalf("dave's sync: %q", bodies)
	}
	r := dave.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=4&from="+url.QueryEscape(fmt.Sprint(tl["prev_batch"])), nil)
	var got []string
	chunk, _ := r.JSON["chunk"].([]any)
	for _, ev := range chunk {
		got = append(got, fmt.Sprint(get(ev, "content", "body")))
	}
	want := slices.Clone(early)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("paging back from prev_batch: %q, want %q", got, want)
	}
}
