package client_test

import (
	"strings"
	"testing"

	"hearth/server/servertest"
)

// Spec: "Profiles": GET is public, PUT only by the owner.
func TestProfile(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	anon := s.Client(t)
	const base = "/_matrix/client/v3/profile/@alice:localhost"

	// The display name starts as the localpart, as Synapse does.
	if r := anon.Must(200, "GET", base+"/displayname", nil); r.Str("displayname") != "alice" {
		t.Fatalf("initial displayname: %s", r)
	}
	if r := anon.Do("GET", base+"/avatar_url", nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("unset avatar_url: %s", r)
	}
	alice.Must(200, "PUT", base+"/displayname", map[string]any{"displayname": "Alice 🌻"})
	alice.Must(200, "PUT", base+"/avatar_url", map[string]any{"avatar_url": "mxc://localhost/sunflower"})
	r := anon.Must(200, "GET", base, nil)
	if r.Str("displayname") != "Alice 🌻" || r.Str("avatar_url") != "mxc://localhost/sunflower" {
		t.Fatalf("profile: %s", r)
	}
	if r := anon.Must(200, "GET", "/_matrix/client/r0/profile/%40alice%3Alocalhost/avatar_url", nil); r.Str("avatar_url") != "mxc://localhost/sunflower" {
		t.Fatalf("r0, encoded user ID: %s", r)
	}

	for _, tc := range []struct {
		name    string
		c       *servertest.Client
		path    string
		body    any
		status  int
		errcode string
	}{
		{"another user's name", bob, base + "/displayname", map[string]any{"displayname": "pwned"}, 403, "M_FORBIDDEN"},
		{"another user's avatar", bob, base + "/avatar_url", map[string]any{"avatar_url": "mxc://x/y"}, 403, "M_FORBIDDEN"},
		{"anonymous", anon, base + "/displayname", map[string]any{"displayname": "x"}, 401, "M_MISSING_TOKEN"},
		{"missing field", alice, base + "/displayname", map[string]any{}, 400, "M_MISSING_PARAM"},
		{"too long", alice, base + "/displayname", map[string]any{"displayname": strings.Repeat("a", 257)}, 400, "M_INVALID_PARAM"},
		{"avatar URL too long", alice, base + "/avatar_url", map[string]any{"avatar_url": "mxc://x/" + strings.Repeat("y", 1000)}, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.Do("PUT", tc.path, tc.body)
			if r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}
	if r := anon.Must(200, "GET", base, nil); r.Str("displayname") != "Alice 🌻" {
		t.Fatalf("refused changes changed the profile: %s", r)
	}

	// Clearing a field makes it unset.
	alice.Must(200, "PUT", base+"/avatar_url", map[string]any{"avatar_url": ""})
	if r := anon.Do("GET", base+"/avatar_url", nil); r.Status != 404 {
		t.Fatalf("cleared avatar_url: %s", r)
	}
	for _, path := range []string{"/_matrix/client/v3/profile/@nobody:localhost", "/_matrix/client/v3/profile/@nobody:localhost/displayname", "/_matrix/client/v3/profile/not-a-user-id"} {
		if r := anon.Do("GET", path, nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
			t.Errorf("%s: %s", path, r)
		}
	}
}

// Spec: "Events on change of profile information": a new display name or
// avatar reaches every room the user is joined to as an m.room.member
// event, and no other room.
func TestProfilePropagatesToRooms(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")
	r1 := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(r1, "/join"), map[string]any{})
	r2 := createRoom(t, bob, map[string]any{"preset": "public_chat"})
	alice.Must(200, "POST", roomPath(r2, "/join"), map[string]any{})
	left := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	bob.Must(200, "POST", roomPath(left, "/join"), map[string]any{})
	alice.Must(200, "POST", roomPath(left, "/leave"), map[string]any{})

	alice.Must(200, "PUT", "/_matrix/client/v3/profile/@alice:localhost/displayname", map[string]any{"displayname": "Alice B."})
	alice.Must(200, "PUT", "/_matrix/client/v3/profile/@alice:localhost/avatar_url", map[string]any{"avatar_url": "mxc://localhost/face"})
	for _, room := range []string{r1, r2} {
		m := stateMap(t, bob, room)["m.room.member|@alice:localhost"]
		if m["displayname"] != "Alice B." || m["avatar_url"] != "mxc://localhost/face" || m["membership"] != "join" {
			t.Errorf("room %s: member event %v", room, m)
		}
	}
	if m := stateMap(t, bob, left)["m.room.member|@alice:localhost"]; m["membership"] != "leave" {
		t.Errorf("a left room got a profile update: %v", m)
	}
}
