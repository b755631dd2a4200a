package federation_test

import (
	"net/url"
	"strconv"
	"testing"

	"hearth/server/servertest"
)

// TestTimestampToEventAcrossServers: bob's server joined alice's room
// after she had talked in it, so its own history starts at bob's join.
// Asked for the first event after a time before that, B asks A
// (federation timestamp_to_event), fetches the event A names and answers
// with it, as A would; bob can then read it. An event B already has
// closer than anything before the gap is answered locally.
func TestTimestampToEventAcrossServers(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "password-alice")
	bob := b.Register(t, "bob", "password-bob")
	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	room := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)
	early := alice.Must(200, "PUT", room+"/send/m.room.message/t1", map[string]any{"msgtype": "m.text", "body": "before bob"}).Str("event_id")
	earlyTS := int64(alice.Must(200, "GET", room+"/event/"+url.PathEscape(early), nil).JSON["origin_server_ts"].(float64))
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	near := func(c *servertest.Client, ts int64, dir string) string {
		t.Helper()
		r := c.Must(200, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(roomID)+"/timestamp_to_event?ts="+itoa(ts)+"&dir="+dir, nil)
		return r.Str("event_id")
	}
	want := near(alice, earlyTS, "f")
	if want != early {
		t.Fatalf("A's answer: %s, want alice's message %s", want, early)
	}
	if got := near(bob, earlyTS, "f"); got != want {
		t.Fatalf("B's answer: %s, want A's %s", got, want)
	}
	if r := bob.Must(200, "GET", room+"/event/"+url.PathEscape(early), nil); r.JSON["content"].(map[string]any)["body"] != "before bob" {
		t.Fatalf("bob reads the fetched event: %s", r)
	}

	// After the join, B's own answer stands.
	late := bob.Must(200, "PUT", room+"/send/m.room.message/t2", map[string]any{"msgtype": "m.text", "body": "bob here"}).Str("event_id")
	lateTS := int64(bob.Must(200, "GET", room+"/event/"+url.PathEscape(late), nil).JSON["origin_server_ts"].(float64))
	if got := near(bob, lateTS, "b"); got != late {
		t.Fatalf("B's answer after the join: %s, want bob's message %s", got, late)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
