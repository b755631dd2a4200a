package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
)

// sharedRoom has alice (of A) create a public room that bob (of B) joins,
// and returns it once A sees bob joined.
func sharedRoom(t *testing.T, a *servertest.Server, alice, bob *servertest.Client) string {
	t.Helper()
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")
	return roomID
}

// syncUntil long-polls c's sync from since until cond holds of a
// response, and returns that response and the token after it.
func syncUntil(t *testing.T, c *servertest.Client, since string, what string, cond func(resp map[string]any) bool) (map[string]any, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		path := "/_matrix/client/v3/sync?timeout=1000"
		if since != "" {
			path += "&since=" + url.QueryEscape(since)
		}
		r := c.Must(200, "GET", path, nil)
		last = r.JSON
		if cond(r.JSON) {
			return r.JSON, r.Str("next_batch")
		}
		since = r.Str("next_batch")
	}
	t.Fatalf("%s: %s not seen within 10 s; last sync: %v", c.UserID, what, last)
	return nil, ""
}

func syncToken(c *servertest.Client) string {
	return c.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0", nil).Str("next_batch")
}

// get walks a decoded JSON value by object keys.
func get(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// ephemeral returns the ephemeral event of a type in a joined room of a
// sync response, or nil.
func ephemeral(resp map[string]any, roomID, typ string) map[string]any {
	evs, _ := get(resp, "rooms", "join", roomID, "ephemeral", "events").([]any)
	for _, e := range evs {
		if ev, _ := e.(map[string]any); ev["type"] == typ {
			return ev
		}
	}
	return nil
}

func typingUsers(resp map[string]any, roomID string) []string {
	ev := ephemeral(resp, roomID, "m.typing")
	if ev == nil {
		return nil
	}
	var out []string
	ids, _ := get(ev, "content", "user_ids").([]any)
	for _, id := range ids {
		out = append(out, id.(string))
	}
	return out
}

func presenceOf(resp map[string]any, userID string) map[string]any {
	evs, _ := get(resp, "presence", "events").([]any)
	for _, e := range evs {
		if ev, _ := e.(map[string]any); ev["sender"] == userID {
			c, _ := ev["content"].(map[string]any)
			return c
		}
	}
	return nil
}

// Typing, read receipts and presence of a user reach the syncs of the
// users of the other server sharing the room, both ways.
func TestTypingReceiptsPresenceAcrossServers(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := sharedRoom(t, a, alice, bob)
	room := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)

	t.Run("typing", func(t *testing.T) {
		since := syncToken(alice)
		bob.Must(200, "PUT", room+"/typing/"+url.PathEscape(bob.UserID), map[string]any{"typing": true, "timeout": 20000})
		since = pollTyping(t, alice, since, roomID, []string{bob.UserID})
		bob.Must(200, "PUT", room+"/typing/"+url.PathEscape(bob.UserID), map[string]any{"typing": false})
		pollTyping(t, alice, since, roomID, []string{})

		bsince := syncToken(bob)
		alice.Must(200, "PUT", room+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": true, "timeout": 20000})
		pollTyping(t, bob, bsince, roomID, []string{alice.UserID})
	})

	t.Run("receipts", func(t *testing.T) {
		eventID := alice.Must(200, "PUT", room+"/send/m.room.message/r1", map[string]any{"msgtype": "m.text", "body": "read me"}).Str("event_id")
		servertest.Eventually(t, 10*time.Second, func() (bool, string) {
			r := bob.Do("GET", room+"/event/"+url.PathEscape(eventID), nil)
			return r.Status == 200, "bob's server has not got the message: " + r.String()
		})
		since := syncToken(alice)
		bob.Must(200, "POST", room+"/receipt/m.read/"+url.PathEscape(eventID), map[string]any{})
		syncUntil(t, alice, since, "bob's read receipt", func(resp map[string]any) bool {
			ev := ephemeral(resp, roomID, "m.receipt")
			return get(ev, "content", eventID, "m.read", bob.UserID, "ts") != nil
		})
		// A private receipt stays on bob's server.
		since = syncToken(alice)
		bob.Must(200, "POST", room+"/receipt/m.read.private/"+url.PathEscape(eventID), map[string]any{})
		bob.Must(200, "PUT", room+"/typing/"+url.PathEscape(bob.UserID), map[string]any{"typing": true, "timeout": 20000}) // a marker after it
		resp, _ := syncUntil(t, alice, since, "bob typing (sent after the private receipt)", func(resp map[string]any) bool {
			return slices.Contains(typingUsers(resp, roomID), bob.UserID)
		})
		if ev := ephemeral(resp, roomID, "m.receipt"); ev != nil {
			t.Errorf("alice got a receipt after bob's private one: %v", ev)
		}
	})

	t.Run("presence", func(t *testing.T) {
		since := syncToken(alice)
		bob.Must(200, "PUT", "/_matrix/client/v3/presence/"+url.PathEscape(bob.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "out for lunch"})
		resp, _ := syncUntil(t, alice, since, "bob's presence", func(resp map[string]any) bool {
			c := presenceOf(resp, bob.UserID)
			return c != nil && c["presence"] == "unavailable"
		})
		if c := presenceOf(resp, bob.UserID); c["status_msg"] != "out for lunch" {
			t.Errorf("bob's presence on A: %v", c)
		}
		r := alice.Must(200, "GET", "/_matrix/client/v3/presence/"+url.PathEscape(bob.UserID)+"/status", nil)
		if r.Str("presence") != "unavailable" {
			t.Errorf("GET presence of bob on A: %s", r)
		}
	})
}

// pollTyping waits until c's sync shows exactly want typing in roomID.
func pollTyping(t *testing.T, c *servertest.Client, since, roomID string, want []string) string {
	t.Helper()
	_, next := syncUntil(t, c, since, fmt.Sprintf("typing %v", want), func(resp map[string]any) bool {
		got := typingUsers(resp, roomID)
		return ephemeral(resp, roomID, "m.typing") != nil && slices.Equal(got, want) || len(want) == 0 && got == nil && ephemeral(resp, roomID, "m.typing") != nil
	})
	return next
}

// sendEDUs sends a transaction of EDUs from one server to another, signed
// by the sender as a peer would.
func sendEDUs(t *testing.T, from, to *servertest.Server, txnID string, edus ...map[string]any) {
	t.Helper()
	body := map[string]any{"origin": from.ServerName(), "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": edus}
	var out json.RawMessage
	if err := from.Federation().Client().Call(context.Background(), "PUT", to.ServerName(), "/_matrix/federation/v1/send/"+txnID, body, &out); err != nil {
		t.Fatalf("send %s: %v", txnID, err)
	}
}

func edu(typ string, content map[string]any) map[string]any {
	return map[string]any{"edu_type": typ, "content": content}
}

// A server cannot speak for another server's users, nor for its own users
// in rooms they are not joined to: such EDUs are dropped, while the
// honest ones in the same transaction go through.
func TestHostilePeerEDUs(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	mallory := a.Register(t, "mallory", "pw-mallory") // joined to bob's room, on the hostile server A
	eve := a.Register(t, "eve", "pw-eve")             // of A, not in the room
	bob := b.Register(t, "bob", "pw-bob")
	carol := b.Register(t, "carol", "pw-carol")
	roomID := bob.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	carol.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{})
	mallory.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})
	waitMembership(t, bob, roomID, mallory.UserID, "join")
	eventID := bob.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/m1", map[string]any{"msgtype": "m.text", "body": "hi"}).Str("event_id")
	since := syncToken(bob)

	forged := func(userID string) map[string]any {
		return map[string]any{roomID: map[string]any{"m.read": map[string]any{userID: map[string]any{"event_ids": []string{eventID}, "data": map[string]any{"ts": 1}}}}}
	}
	sendEDUs(t, a, b, "hostile1",
		// Carol is B's own user; other.example is nobody A may speak for.
		edu("m.typing", map[string]any{"room_id": roomID, "user_id": carol.UserID, "typing": true}),
		edu("m.typing", map[string]any{"room_id": roomID, "user_id": "@x:other.example", "typing": true}),
		edu("m.typing", map[string]any{"room_id": roomID, "user_id": eve.UserID, "typing": true}),
		edu("m.receipt", forged(carol.UserID)),
		edu("m.receipt", forged(eve.UserID)),
		edu("m.presence", map[string]any{"push": []any{map[string]any{"user_id": carol.UserID, "presence": "online", "status_msg": "forged", "last_active_ago": 1}}}),
		edu("m.device_list_update", map[string]any{"user_id": carol.UserID, "device_id": "EVIL", "stream_id": 1, "keys": map[string]any{}}),
		edu("m.signing_key_update", map[string]any{"user_id": carol.UserID, "master_key": map[string]any{"user_id": carol.UserID, "usage": []string{"master"}, "keys": map[string]any{"ed25519:x": "x"}}}),
		edu("m.direct_to_device", map[string]any{"sender": carol.UserID, "type": "m.test", "message_id": "m1",
			"messages": map[string]any{bob.UserID: map[string]any{"*": map[string]any{"forged": true}}}}),
		// The honest one: mallory is A's and joined.
		edu("m.typing", map[string]any{"room_id": roomID, "user_id": mallory.UserID, "typing": true}),
	)
	resp, _ := syncUntil(t, bob, since, "mallory typing", func(resp map[string]any) bool {
		return slices.Contains(typingUsers(resp, roomID), mallory.UserID)
	})
	if got := typingUsers(resp, roomID); !slices.Equal(got, []string{mallory.UserID}) {
		t.Errorf("typing: want only mallory, got %v", got)
	}
	if ev := ephemeral(resp, roomID, "m.receipt"); ev != nil {
		t.Errorf("forged receipts reached bob: %v", ev)
	}
	if c := presenceOf(resp, carol.UserID); c != nil && c["status_msg"] == "forged" {
		t.Errorf("forged presence for carol: %v", c)
	}
	if td := get(resp, "to_device", "events"); td != nil {
		t.Errorf("forged to-device message delivered: %v", td)
	}
	if ch, _ := get(resp, "device_lists", "changed").([]any); slices.Contains(ch, any(carol.UserID)) {
		t.Errorf("a forged device-list update marked carol changed: %v", ch)
	}
	q := bob.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{carol.UserID: []string{}}})
	if get(q.JSON, "device_keys", carol.UserID, "EVIL") != nil || get(q.JSON, "master_keys", carol.UserID) != nil {
		t.Errorf("forged keys for carol are served: %s", q)
	}
}

// A to-device message a peer resends under another transaction is
// delivered once: message IDs are remembered per sender.
func TestToDeviceDedupe(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	since := syncToken(bob)
	msg := edu("m.direct_to_device", map[string]any{"sender": alice.UserID, "type": "m.test", "message_id": "once",
		"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}})
	sendEDUs(t, a, b, "t1", msg)
	sendEDUs(t, a, b, "t2", msg)
	sendEDUs(t, a, b, "t3", edu("m.direct_to_device", map[string]any{"sender": alice.UserID, "type": "m.test", "message_id": "twice",
		"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 2}}}}))
	var got []any
	syncUntil(t, bob, since, "both messages", func(resp map[string]any) bool {
		evs, _ := get(resp, "to_device", "events").([]any)
		got = append(got, evs...)
		return len(got) >= 2
	})
	if len(got) != 2 || get(got[0], "content", "n") != 1.0 || get(got[1], "content", "n") != 2.0 {
		t.Errorf("bob's device got %v, want n=1 once then n=2", got)
	}
}
