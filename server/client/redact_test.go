package client_test

import (
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"hearth/server/servertest"
)

var relTxn atomic.Int64

// sendEvent sends an event of any type with a fresh transaction ID and
// returns its ID.
func sendEvent(t *testing.T, c *servertest.Client, roomID, typ string, content map[string]any) string {
	t.Helper()
	r := c.Must(200, "PUT", roomPath(roomID, fmt.Sprintf("/send/%s/rel%d", typ, relTxn.Add(1))), content)
	return r.Str("event_id")
}

// getEvent fetches an event as c sees it.
func getEvent(t *testing.T, c *servertest.Client, roomID, eventID string) *servertest.Response {
	t.Helper()
	return c.Must(200, "GET", roomPath(roomID, "/event/"+url.PathEscape(eventID)), nil)
}

func unsignedOf(r *servertest.Response) map[string]any {
	u, _ := r.JSON["unsigned"].(map[string]any)
	return u
}

func redactPath(roomID, eventID, txn string) string {
	return roomPath(roomID, "/redact/"+url.PathEscape(eventID)+"/"+txn)
}

// Spec: "Redactions". The sender may redact their own events, a
// moderator anyone's, a powerless user only their own; the redacted event
// is served stripped with unsigned.redacted_because, and the redaction
// names its target both at the top level and in content, in room versions
// before and after v11 moved it.
func TestRedaction(t *testing.T) {
	for _, version := range []string{"10", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			s := servertest.Start(t, servertest.Options{})
			alice := s.Register(t, "alice", "pw")
			bob := s.Register(t, "bob", "pw")
			carol := s.Register(t, "carol", "pw")
			room := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": version})
			bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
			carol.Must(200, "POST", roomPath(room, "/join"), map[string]any{})

			// Bob redacts his own message.
			mine := send(t, bob, room, "oops, wrong room")
			red := bob.Must(200, "PUT", redactPath(room, mine, "r1"), map[string]any{"reason": "typo"}).Str("event_id")
			if again := bob.Must(200, "PUT", redactPath(room, mine, "r1"), map[string]any{"reason": "typo"}).Str("event_id"); again != red {
				t.Fatalf("retried redaction made a second event: %s, %s", red, again)
			}
			got := getEvent(t, carol, room, mine)
			if c := got.JSON["content"].(map[string]any); len(c) != 0 {
				t.Fatalf("redacted content: %v", c)
			}
			because, _ := unsignedOf(got)["redacted_because"].(map[string]any)
			if because["event_id"] != red || because["type"] != "m.room.redaction" || because["content"].(map[string]any)["reason"] != "typo" {
				t.Fatalf("redacted_because: %s", got)
			}
			re := getEvent(t, carol, room, red)
			if re.Str("redacts") != mine || re.JSON["content"].(map[string]any)["redacts"] != mine {
				t.Fatalf("redaction event does not name its target in both places: %s", re)
			}
			page := carol.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=5"), nil).JSON["chunk"].([]any)
			for _, e := range page {
				ev := e.(map[string]any)
				if ev["event_id"] == mine && len(ev["content"].(map[string]any)) != 0 {
					t.Fatalf("/messages serves the original: %v", ev)
				}
			}

			// Carol, at power 0, may not redact someone else's message.
			alices := send(t, alice, room, "keep me")
			if r := carol.Do("PUT", redactPath(room, alices, "c1"), map[string]any{}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
				t.Fatalf("powerless redaction: %s", r)
			}
			if body := getEvent(t, bob, room, alices).JSON["content"].(map[string]any)["body"]; body != "keep me" {
				t.Fatalf("refused redaction changed the event: %v", body)
			}

			// The room's creator, and a moderator at the redact level, may.
			spam := send(t, carol, room, "spam 1")
			alice.Must(200, "PUT", redactPath(room, spam, "a1"), map[string]any{"reason": "spam"})
			pl := stateMap(t, alice, room)["m.room.power_levels|"]
			users := pl["users"].(map[string]any)
			users["@bob:localhost"] = 50
			alice.Must(200, "PUT", roomPath(room, "/state/m.room.power_levels/"), pl)
			spam2 := send(t, carol, room, "spam 2")
			bob.Must(200, "PUT", redactPath(room, spam2, "b2"), map[string]any{})
			for _, id := range []string{spam, spam2} {
				if c := getEvent(t, alice, room, id).JSON["content"].(map[string]any); len(c) != 0 {
					t.Errorf("moderated message %s still has content %v", id, c)
				}
			}

			// Clients may also send the redaction event themselves; the server
			// puts redacts where the room version wants it.
			viaSend := send(t, bob, room, "redact me via send")
			rid := sendEvent(t, bob, room, "m.room.redaction", map[string]any{"redacts": viaSend})
			if c := getEvent(t, alice, room, viaSend).JSON["content"].(map[string]any); len(c) != 0 {
				t.Fatalf("redaction sent with /send did not apply: %v", c)
			}
			if r := getEvent(t, alice, room, rid); r.Str("redacts") != viaSend {
				t.Fatalf("redaction via /send: %s", r)
			}

			// A redacted state event loses its content: the topic is gone.
			topic := alice.Must(200, "PUT", roomPath(room, "/state/m.room.topic/"), map[string]any{"topic": "secret"}).Str("event_id")
			alice.Must(200, "PUT", redactPath(room, topic, "t1"), map[string]any{})
			if r := bob.Must(200, "GET", roomPath(room, "/state/m.room.topic/"), nil); r.Str("topic") != "" {
				t.Fatalf("redacted topic still served: %s", r)
			}
		})
	}
}

// Bad redactions get the spec's errors and leave nothing behind.
func TestRedactionBadInput(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	stranger := s.Register(t, "stranger", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	other := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	msg := send(t, alice, room, "hello")
	elsewhere := send(t, alice, other, "in another room")
	for _, tc := range []struct {
		name    string
		c       *servertest.Client
		path    string
		body    any
		status  int
		errcode string
	}{
		// With the power to redact others' events, alice may redact one
		// this server has not received (TestRedactionBeforeItsEvent).
		{"unknown event, without the power to redact others'", bob, redactPath(room, "$nope", "x1"), map[string]any{}, 404, "M_NOT_FOUND"},
		{"event of another room", alice, redactPath(room, elsewhere, "x2"), map[string]any{}, 404, "M_NOT_FOUND"},
		{"unknown room", alice, redactPath("!nope:localhost", msg, "x3"), map[string]any{}, 404, "M_NOT_FOUND"},
		{"non-member", stranger, redactPath(room, msg, "x4"), map[string]any{}, 403, "M_FORBIDDEN"},
		{"reason of wrong type", alice, redactPath(room, msg, "x5"), map[string]any{"reason": 5}, 400, "M_BAD_JSON"},
		{"redaction via send without redacts", alice, roomPath(room, "/send/m.room.redaction/x6"), map[string]any{}, 400, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := tc.c.Do("PUT", tc.path, tc.body); r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}
	if body := getEvent(t, alice, room, msg).JSON["content"].(map[string]any)["body"]; body != "hello" {
		t.Fatalf("a refused redaction changed the event: %v", body)
	}
	chunk := alice.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=50"), nil).JSON["chunk"].([]any)
	for _, e := range chunk {
		if e.(map[string]any)["type"] == "m.room.redaction" {
			t.Fatalf("a refused redaction left an event: %v", e)
		}
	}
}

// Spec: unsigned.transaction_id is shown only to the device that sent the
// event, on /event and /messages, for sends and redactions alike; a
// transaction ID on /redact is its own transaction, apart from /send.
func TestTransactionIDForSendingDeviceOnly(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	phone := s.Register(t, "alice", "pw")
	laptop := s.Login(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, phone, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(room, "/join"), map[string]any{})

	id := phone.Must(200, "PUT", roomPath(room, "/send/m.room.message/local-echo-1"), map[string]any{"msgtype": "m.text", "body": "hi"}).Str("event_id")
	for _, tc := range []struct {
		name string
		c    *servertest.Client
		want any
	}{
		{"sending device", phone, "local-echo-1"},
		{"same user, other device", laptop, nil},
		{"other user", bob, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unsignedOf(getEvent(t, tc.c, room, id))["transaction_id"]; got != tc.want {
				t.Errorf("/event transaction_id = %v, want %v", got, tc.want)
			}
			var found bool
			for _, e := range tc.c.Must(200, "GET", roomPath(room, "/messages?dir=b&limit=5"), nil).JSON["chunk"].([]any) {
				ev := e.(map[string]any)
				if ev["event_id"] == id {
					found = true
					u, _ := ev["unsigned"].(map[string]any)
					if u["transaction_id"] != tc.want {
						t.Errorf("/messages transaction_id = %v, want %v", u["transaction_id"], tc.want)
					}
				}
			}
			if !found {
				t.Error("event missing from /messages")
			}
		})
	}

	// The same transaction ID on /redact is a new transaction, and the
	// redaction carries it for the sending device.
	red := phone.Must(200, "PUT", redactPath(room, id, "local-echo-1"), map[string]any{}).Str("event_id")
	if red == id {
		t.Fatal("/redact reused the /send transaction")
	}
	if got := unsignedOf(getEvent(t, phone, room, red))["transaction_id"]; got != "local-echo-1" {
		t.Errorf("redaction transaction_id = %v", got)
	}
	if got := unsignedOf(getEvent(t, laptop, room, red))["transaction_id"]; got != nil {
		t.Errorf("other device sees redaction transaction_id %v", got)
	}
}
