package syncapi_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

func ephemeral(r *servertest.Response, roomID, typ string) map[string]any {
	jr := section(r, "join", roomID)
	eph, _ := jr["ephemeral"].(map[string]any)
	evs, _ := eph["events"].([]any)
	for _, e := range evs {
		if e.(map[string]any)["type"] == typ {
			return e.(map[string]any)["content"].(map[string]any)
		}
	}
	return nil
}

func unread(r *servertest.Response, roomID string) (float64, float64) {
	u, _ := section(r, "join", roomID)["unread_notifications"].(map[string]any)
	n, _ := u["notification_count"].(float64)
	h, _ := u["highlight_count"].(float64)
	return n, h
}

// aliceAndBob starts a server where bob has joined alice's public room,
// and returns them, the room and its client API path.
func aliceAndBob(t *testing.T) (alice, bob *servertest.Client, room, rp string) {
	t.Helper()
	s := servertest.Start(t, servertest.Options{})
	alice, bob = s.Register(t, "alice", "pw"), s.Register(t, "bob", "pw")
	room = createRoom(t, alice, map[string]any{"preset": "public_chat"})
	rp = "/_matrix/client/v3/rooms/" + url.PathEscape(room)
	bob.Must(200, "POST", rp+"/join", map[string]any{})
	return alice, bob, room, rp
}

// Spec: "Receipts", "Fully read markers" and unread counts: a receipt
// reaches the other members, private ones only their owner; unread
// counts fall when the user reads.
func TestReceiptsAndUnread(t *testing.T) {
	alice, bob, room, rp := aliceAndBob(t)
	send(t, alice, room, "one")
	two := send(t, alice, room, "two")
	alice.Must(200, "PUT", rp+"/send/m.room.message/mention", map[string]any{"msgtype": "m.text", "body": "bob!", "m.mentions": map[string]any{"user_ids": []string{"@bob:localhost"}}})

	r := syncOnce(t, bob, "", 0, "")
	if n, h := unread(r, room); n != 3 || h != 1 {
		t.Fatalf("unread before reading: %v notifications, %v highlights", n, h)
	}
	aliceNext := syncOnce(t, alice, "", 0, "").Str("next_batch")

	bob.Must(200, "POST", rp+"/receipt/m.read/"+url.PathEscape(two), map[string]any{})
	got := syncOnce(t, alice, aliceNext, 10000, "")
	rc := ephemeral(got, room, "m.receipt")
	if rc == nil || rc[two].(map[string]any)["m.read"].(map[string]any)["@bob:localhost"] == nil {
		t.Fatalf("alice does not see bob's receipt: %s", got)
	}
	r = syncOnce(t, bob, r.Str("next_batch"), 10000, "")
	if n, h := unread(r, room); n != 1 || h != 1 {
		t.Fatalf("unread after reading two: %v, %v", n, h)
	}

	// A private receipt reaches only its owner.
	bob.Must(200, "POST", rp+"/receipt/m.read.private/"+url.PathEscape(two), map[string]any{})
	if got := syncOnce(t, alice, got.Str("next_batch"), 300, ""); ephemeral(got, room, "m.receipt") != nil {
		t.Fatalf("alice sees bob's private receipt: %s", got)
	}

	// Read markers: m.fully_read lands in bob's room account data.
	bob.Must(200, "POST", rp+"/read_markers", map[string]any{"m.fully_read": two, "m.read": two})
	if r := bob.Must(200, "GET", "/_matrix/client/v3/user/@bob:localhost/rooms/"+url.PathEscape(room)+"/account_data/m.fully_read", nil); r.Str("event_id") != two {
		t.Fatalf("fully read marker: %s", r)
	}
	// Writing is reading: bob's own message zeroes his count.
	send(t, bob, room, "thanks")
	if n, _ := unread(syncOnce(t, bob, "", 0, ""), room); n != 0 {
		t.Fatalf("unread after bob wrote: %v", n)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{rp + "/receipt/m.read/$nope", 404},
		{rp + "/receipt/m.unknown/" + url.PathEscape(two), 400},
	} {
		if r := bob.Do("POST", tc.path, map[string]any{}); r.Status != tc.want {
			t.Errorf("%s: %s", tc.path, r)
		}
	}
	if r := bob.Do("POST", rp+"/receipt/m.fully_read/"+url.PathEscape(two), map[string]any{"thread_id": "main"}); r.Status != 400 {
		t.Errorf("threaded m.fully_read: %s", r)
	}
}

// Spec: unread_thread_notifications: the main timeline and each thread
// are counted apart, each after its own receipt.
func TestUnreadThreadNotifications(t *testing.T) {
	alice, bob, room, rp := aliceAndBob(t)
	root := send(t, alice, room, "what's for dinner?")
	for i := range 3 {
		alice.Must(200, "PUT", rp+"/send/m.room.message/thread"+string(rune('a'+i)), map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	}
	send(t, alice, room, "main again")
	f := "&filter=" + url.QueryEscape(`{"room":{"timeline":{"unread_thread_notifications":true}}}`)
	r := syncOnce(t, bob, "", 0, f)
	main, _ := unread(r, room)
	threads, _ := section(r, "join", room)["unread_thread_notifications"].(map[string]any)
	if tc, _ := threads[root].(map[string]any); main != 2 || tc["notification_count"] != 3.0 {
		t.Fatalf("split counts: main %v, threads %v", main, threads)
	}
	// A threaded receipt clears the thread only.
	last := alice.Must(200, "GET", rp+"/messages?dir=b&limit=3", nil).JSON["chunk"].([]any)[1].(map[string]any)["event_id"].(string)
	bob.Must(200, "POST", rp+"/receipt/m.read/"+url.PathEscape(last), map[string]any{"thread_id": root})
	r = syncOnce(t, bob, "", 0, f)
	main, _ = unread(r, room)
	left, _ := section(r, "join", room)["unread_thread_notifications"].(map[string]any)
	if _, still := left[root]; main != 2 || still {
		t.Fatalf("after a thread receipt: main %v, threads %v", main, section(r, "join", room)["unread_thread_notifications"])
	}
}

// MSC4102: a user's unthreaded and threaded receipts for the same event
// cannot both fit the receipt map; the unthreaded one is shown, whatever
// order they were sent in (Complement's TestThreadReceiptsInSyncMSC4102).
func TestUnthreadedReceiptShownOverThreaded(t *testing.T) {
	alice, bob, room, rp := aliceAndBob(t)
	root := send(t, alice, room, "root")
	reply := alice.Must(200, "PUT", rp+"/send/m.room.message/in-thread", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}).Str("event_id")
	bob.Must(200, "POST", rp+"/receipt/m.read/"+url.PathEscape(reply), map[string]any{})
	bob.Must(200, "POST", rp+"/receipt/m.read/"+url.PathEscape(reply), map[string]any{"thread_id": root})
	for _, c := range []*servertest.Client{alice, bob} {
		got := syncOnce(t, c, "", 0, "")
		rc := ephemeral(got, room, "m.receipt")
		byType, _ := rc[reply].(map[string]any)
		read, _ := byType["m.read"].(map[string]any)
		entry, _ := read["@bob:localhost"].(map[string]any)
		if entry == nil || entry["thread_id"] != nil {
			t.Fatalf("%s sees bob's receipt for the reply as %v, want the unthreaded one: %s", c.UserID, entry, got)
		}
	}
}
