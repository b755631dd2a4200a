package client_test

import (
	"fmt"
	"testing"
	"time"

	"hearth/server/servertest"
)

// Spec: GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.
func TestTimestampToEvent(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{})
	first := send(t, alice, room, "one")
	time.Sleep(5 * time.Millisecond) // distinct timestamps, not a speed assertion
	mid := time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	second := send(t, alice, room, "two")

	path := func(ts int64, dir string) string {
		return "/_matrix/client/v1/rooms/" + room + fmt.Sprintf("/timestamp_to_event?ts=%d&dir=%s", ts, dir)
	}
	if r := alice.Must(200, "GET", path(mid, "f"), nil); r.Str("event_id") != second {
		t.Fatalf("forward from the middle: %s", r)
	}
	if r := alice.Must(200, "GET", path(mid, "b"), nil); r.Str("event_id") != first {
		t.Fatalf("backward from the middle: %s", r)
	}
	if r := alice.Do("GET", path(time.Now().Add(time.Hour).UnixMilli(), "f"), nil); r.Status != 404 {
		t.Fatalf("forward from the future: %s", r)
	}
	if r := alice.Do("GET", path(mid, "x"), nil); r.Status != 400 {
		t.Fatalf("bad dir: %s", r)
	}
	if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+room+"/timestamp_to_event?ts=1&dir=f", nil); r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("v3 path (the endpoint is v1 only): %s", r)
	}
}
