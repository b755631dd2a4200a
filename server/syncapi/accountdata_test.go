package syncapi_test

import (
	"net/url"
	"testing"

	"hearth/server/servertest"
)

// Spec: "Client config" and "Room tagging": account data and tags round
// trip, and reach the user's other devices through /sync.
func TestAccountDataAndTags(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	phone := s.Register(t, "alice", "pw")
	laptop := s.Login(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	room := createRoom(t, phone, map[string]any{})
	next := syncOnce(t, laptop, "", 0, "").Str("next_batch")

	phone.Must(200, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/org.example.theme", map[string]any{"dark": true})
	if r := phone.Must(200, "GET", "/_matrix/client/v3/user/@alice:localhost/account_data/org.example.theme", nil); r.JSON["dark"] != true {
		t.Fatalf("account data read back: %s", r)
	}
	r := syncOnce(t, laptop, next, 10000, "")
	evs, _ := r.JSON["account_data"].(map[string]any)["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["type"] != "org.example.theme" {
		t.Fatalf("account data in sync: %s", r)
	}
	next = r.Str("next_batch")

	tags := "/_matrix/client/v3/user/@alice:localhost/rooms/" + url.PathEscape(room) + "/tags"
	phone.Must(200, "PUT", tags+"/m.favourite", map[string]any{"order": 0.25})
	phone.Must(200, "PUT", tags+"/u.recipes", map[string]any{})
	got := phone.Must(200, "GET", tags, nil).JSON["tags"].(map[string]any)
	if got["m.favourite"].(map[string]any)["order"] != 0.25 || got["u.recipes"] == nil {
		t.Fatalf("tags: %v", got)
	}
	phone.Must(200, "DELETE", tags+"/u.recipes", nil)
	r = syncOnce(t, laptop, next, 10000, "")
	jr := section(r, "join", room)
	ad := jr["account_data"].(map[string]any)["events"].([]any)[0].(map[string]any)
	if ad["type"] != "m.tag" || len(ad["content"].(map[string]any)["tags"].(map[string]any)) != 1 {
		t.Fatalf("tags in sync: %v", ad)
	}

	for _, tc := range []struct {
		c      *servertest.Client
		method string
		path   string
		status int
	}{
		{bob, "GET", "/_matrix/client/v3/user/@alice:localhost/account_data/org.example.theme", 403},
		{bob, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/x", 403},
		{phone, "GET", "/_matrix/client/v3/user/@alice:localhost/account_data/never.set", 404},
		{phone, "PUT", "/_matrix/client/v3/user/@alice:localhost/account_data/m.fully_read", 405},
		{phone, "PUT", tags + "/bad", 400},
	} {
		body := any(map[string]any{"x": 1})
		if tc.path == tags+"/bad" {
			body = map[string]any{"order": 7}
		}
		if r := tc.c.Do(tc.method, tc.path, body); r.Status != tc.status {
			t.Errorf("%s %s: %s", tc.method, tc.path, r)
		}
	}
}
