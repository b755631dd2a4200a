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

// Spec: "Account management", POST /account/password: UIA with the old
// password; other devices are logged out unless logout_devices is false.
func TestChangePassword(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	phone := s.Register(t, "bob", "old-pw")
	laptop := s.Login(t, "bob", "old-pw")
	tablet := s.Login(t, "bob", "old-pw")

	// First round: the server asks for m.login.password.
	r := phone.Must(401, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "new-pw"})
	session := r.Str("session")
	if session == "" || !hasFlow(r, "m.login.password") {
		t.Fatalf("UIA challenge: %s", r)
	}
	// The wrong old password fails the stage and keeps the session.
	r = phone.Must(401, "POST", "/_matrix/client/v3/account/password", map[string]any{
		"new_password": "new-pw", "auth": servertest.PasswordAuth(session, "bob", "wrong"),
	})
	if r.Errcode() != "M_FORBIDDEN" || r.Str("session") != session {
		t.Fatalf("wrong password: %s", r)
	}
	phone.Must(200, "POST", "/_matrix/client/v3/account/password", map[string]any{
		"new_password": "new-pw", "auth": servertest.PasswordAuth(session, "@bob:localhost", "old-pw"),
	})
	phone.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	for _, c := range []*servertest.Client{laptop, tablet} {
		if r := c.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.Errcode() != "M_UNKNOWN_TOKEN" {
			t.Errorf("other device after password change: %s", r)
		}
	}
	if r := s.Client(t).Do("POST", "/_matrix/client/v3/login", loginBody("bob", "old-pw")); r.Status != 403 {
		t.Errorf("old password still logs in: %s", r)
	}
	laptop = s.Login(t, "bob", "new-pw")

	// logout_devices: false keeps the other devices.
	r = phone.Must(401, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "newer"})
	phone.Must(200, "POST", "/_matrix/client/v3/account/password", map[string]any{
		"new_password": "newer", "logout_devices": false,
		"auth": servertest.PasswordAuth(r.Str("session"), "bob", "new-pw"),
	})
	laptop.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)

	// Someone else's password does not pass bob's UIA: a plain 403, as
	// Synapse answers (Complement: "DELETE /device/{deviceId} requires UI
	// auth user to match device owner").
	s.Register(t, "mallory", "mallory-pw")
	r = phone.Must(401, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "x"})
	r = phone.Do("POST", "/_matrix/client/v3/account/password", map[string]any{
		"new_password": "x", "auth": servertest.PasswordAuth(r.Str("session"), "mallory", "mallory-pw"),
	})
	if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" || r.JSON["flows"] != nil {
		t.Fatalf("another user's password: %s", r)
	}
	if r := phone.Do("POST", "/_matrix/client/v3/account/password", map[string]any{}); r.Status != 400 || r.Errcode() != "M_MISSING_PARAM" {
		t.Fatalf("missing new_password: %s", r)
	}
}

// Spec: POST /account/deactivate. Afterwards no token works, login says
// M_USER_DEACTIVATED, and the name stays taken.
func TestDeactivate(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Register(t, "carol", "pw")
	other := s.Login(t, "carol", "pw")
	c.Must(200, "PUT", "/_matrix/client/v3/profile/@carol:localhost/avatar_url", map[string]any{"avatar_url": "mxc://localhost/abc"})
	r := c.Must(401, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{})
	r = c.Must(200, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{
		"erase": true, "auth": servertest.PasswordAuth(r.Str("session"), "carol", "pw"),
	})
	if r.Str("id_server_unbind_result") != "no-support" {
		t.Errorf("deactivate response: %s", r)
	}
	for _, cl := range []*servertest.Client{c, other} {
		if r := cl.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.Errcode() != "M_UNKNOWN_TOKEN" {
			t.Errorf("token after deactivation: %s", r)
		}
	}
	if r := s.Client(t).Do("POST", "/_matrix/client/v3/login", loginBody("carol", "pw")); r.Status != 403 || r.Errcode() != "M_USER_DEACTIVATED" {
		t.Errorf("login after deactivation: %s", r)
	}
	if r := s.Client(t).Do("GET", "/_matrix/client/v3/register/available?username=carol", nil); r.Errcode() != "M_USER_IN_USE" {
		t.Errorf("name of deactivated account: %s", r)
	}
	if r := s.Client(t).Must(200, "GET", "/_matrix/client/v3/profile/@carol:localhost", nil); len(r.JSON) != 0 {
		t.Errorf("erased profile: %s", r)
	}
}

func loginBody(user, password string) map[string]any {
	return map[string]any{
		"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user},
	}
}

// hasFlow reports whether a UIA 401 offers a flow made of exactly stage.
func hasFlow(r *servertest.Response, stage string) bool {
	flows, _ := r.JSON["flows"].([]any)
	for _, f := range flows {
		stages, _ := f.(map[string]any)["stages"].([]any)
		if len(stages) == 1 && stages[0] == stage {
			return true
		}
	}
	return false
}
