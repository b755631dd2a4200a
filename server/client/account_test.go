package client_test

import (
	"testing"

	"hearth/server/servertest"
)

// Spec: Client-Server API, "Account registration and management",
// "Current account information" (GET /account/whoami).
func TestRegisterThenWhoami(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Register(t, "alice", "correct horse")
	if c.UserID != "@alice:localhost" || c.DeviceID == "" || c.Token == "" {
		t.Fatalf("register gave user %q device %q token %q", c.UserID, c.DeviceID, c.Token)
	}
	r := c.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	if r.Str("user_id") != "@alice:localhost" || r.Str("device_id") != c.DeviceID || r.JSON["is_guest"] != false {
		t.Fatalf("whoami: %s", r)
	}
	// The legacy r0 prefix serves the same endpoint.
	c.Must(200, "GET", "/_matrix/client/r0/account/whoami", nil)
	// And the token survives a restart: it is in the database, hashed.
	s.Restart(t)
	c.URL = s.URL
	c.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
}
