package syncapi_test

import (
	"testing"

	"hearth/server/servertest"
)

func toDevice(r *servertest.Response) []map[string]any {
	td, _ := r.JSON["to_device"].(map[string]any)
	evs, _ := td["events"].([]any)
	var out []map[string]any
	for _, e := range evs {
		out = append(out, e.(map[string]any))
	}
	return out
}

// Spec: "Send-to-Device messaging": delivered through sync, kept until the
// device acknowledges them with its next since (across a restart too),
// never delivered again after that; a retried transaction is sent once.
func TestToDevice(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	phone := s.Register(t, "bob", "pw")
	laptop := s.Login(t, "bob", "pw")
	next := syncOnce(t, phone, "", 0, "").Str("next_batch")

	got := make(chan *servertest.Response)
	go func() { got <- syncOnce(t, phone, next, 30000, "") }()
	body := map[string]any{"messages": map[string]any{"@bob:localhost": map[string]any{phone.DeviceID: map[string]any{"secret": "s1"}}}}
	alice.Must(200, "PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/t1", body)
	alice.Must(200, "PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/t1", body) // a retry
	r := <-got
	msgs := toDevice(r)
	if len(msgs) != 1 || msgs[0]["sender"] != "@alice:localhost" || msgs[0]["type"] != "m.room_key_request" {
		t.Fatalf("to-device in sync: %s", r)
	}
	// Not acknowledged yet: syncing again from the old token (a client
	// that lost the response) gets it again, also after a restart.
	s.Restart(t)
	phone.URL, laptop.URL, alice.URL = s.URL, s.URL, s.URL
	if msgs := toDevice(syncOnce(t, phone, next, 0, "")); len(msgs) != 1 {
		t.Fatalf("unacknowledged message after restart: %v", msgs)
	}
	// Acknowledged by syncing from the new token: gone for good.
	r = syncOnce(t, phone, r.Str("next_batch"), 0, "")
	if msgs := toDevice(r); len(msgs) != 0 {
		t.Fatalf("message delivered twice: %v", msgs)
	}
	if msgs := toDevice(syncOnce(t, phone, next, 0, "")); len(msgs) != 0 {
		t.Fatalf("acknowledged message came back: %v", msgs)
	}
	// The laptop got nothing; "*" reaches every device.
	if msgs := toDevice(syncOnce(t, laptop, "", 0, "")); len(msgs) != 0 {
		t.Fatalf("message for the phone reached the laptop: %v", msgs)
	}
	alice.Must(200, "PUT", "/_matrix/client/v3/sendToDevice/m.dummy/t2", map[string]any{"messages": map[string]any{"@bob:localhost": map[string]any{"*": map[string]any{}}}})
	for _, c := range []*servertest.Client{phone, laptop} {
		if msgs := toDevice(syncOnce(t, c, "", 0, "")); len(msgs) != 1 || msgs[0]["type"] != "m.dummy" {
			t.Fatalf("wildcard message: %v", msgs)
		}
	}
	if r := alice.Do("PUT", "/_matrix/client/v3/sendToDevice/m.dummy/t3", map[string]any{}); r.Status != 400 {
		t.Fatalf("no messages: %s", r)
	}
}
