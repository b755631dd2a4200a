package client_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"hearth/server/servertest"
)

var passwordFlows = [][]string{{"m.login.password"}}

// Spec: "User-Interactive Authentication API": a session belongs to the
// request it was started for; a client cannot carry stages it completed
// (or started) for one operation over to another.
func TestUIASessionBoundToEndpoint(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "alice pw")
	second := s.Login(t, "alice", "alice pw")
	third := s.Login(t, "alice", "alice pw")
	bob := s.Register(t, "bob", "bob pw")
	anon := s.Client(t)

	// A session started for POST /register ...
	regSession := wantUIAChallenge(t, "register", anon.Do("POST", registerPath, map[string]any{"username": "carol"}), dummyFlows, nil)
	// ... is not accepted by DELETE /devices.
	r := alice.Do("DELETE", "/_matrix/client/v3/devices/"+second.DeviceID, map[string]any{
		"auth": servertest.PasswordAuth(regSession, alice.UserID, "alice pw")})
	if r.Status != 403 {
		t.Fatalf("register session used for DELETE /devices: want 403, got %s", r)
	}
	second.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)

	// A session started for deleting one device ...
	devPath := "/_matrix/client/v3/devices/" + second.DeviceID
	devSession := wantUIAChallenge(t, "delete device", alice.Do("DELETE", devPath, map[string]any{}), passwordFlows, nil)
	for _, tc := range []struct {
		name string
		do   func() *servertest.Response
	}{
		{"register", func() *servertest.Response {
			return anon.Do("POST", registerPath, map[string]any{"username": "carol",
				"auth": map[string]any{"type": "m.login.dummy", "session": devSession}})
		}},
		{"another device", func() *servertest.Response {
			return alice.Do("DELETE", "/_matrix/client/v3/devices/"+third.DeviceID, map[string]any{
				"auth": servertest.PasswordAuth(devSession, alice.UserID, "alice pw")})
		}},
		{"another user", func() *servertest.Response {
			return bob.Do("DELETE", "/_matrix/client/v3/devices/"+bob.DeviceID, map[string]any{
				"auth": servertest.PasswordAuth(devSession, bob.UserID, "bob pw")})
		}},
		{"password change", func() *servertest.Response {
			return alice.Do("POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "stolen",
				"auth": servertest.PasswordAuth(devSession, alice.UserID, "alice pw")})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := tc.do(); r.Status != 403 {
				t.Fatalf("device-deletion session reused: want 403, got %s", r)
			}
		})
	}
	// Nothing happened: no account, all devices and the password intact.
	anon.Must(200, "GET", "/_matrix/client/v3/register/available?username=carol", nil)
	third.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	bob.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	s.Login(t, "alice", "alice pw")

	// The session still serves what it was started for.
	alice.Must(200, "DELETE", devPath, map[string]any{"auth": servertest.PasswordAuth(devSession, alice.UserID, "alice pw")})
	wantMatrixErr(t, "deleted device's token", second.Do("GET", "/_matrix/client/v3/account/whoami", nil), 401, "M_UNKNOWN_TOKEN")
}

// Spec: "User-Interactive Authentication API": a session ID the server
// does not know is a 400.
func TestUIAUnknownSession(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	other := s.Login(t, "alice", "pw")
	r := s.Client(t).Do("POST", registerPath, map[string]any{"username": "carol",
		"auth": map[string]any{"type": "m.login.dummy", "session": "no-such-session"}})
	if r.Status != 400 || r.Errcode() == "" {
		t.Fatalf("register with unknown session: want 400, got %s", r)
	}
	r = alice.Do("DELETE", "/_matrix/client/v3/devices/"+other.DeviceID, map[string]any{
		"auth": servertest.PasswordAuth("no-such-session", alice.UserID, "pw")})
	if r.Status != 400 || r.Errcode() == "" {
		t.Fatalf("delete device with unknown session: want 400, got %s", r)
	}
	other.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
}

// Spec: "User-Interactive Authentication API" and "Device management",
// DELETE /devices/{deviceId}: a failed stage is a 401 carrying the
// errcode along with flows, session and completed; the client retries in
// the same session.
func TestUIADeleteDeviceWrongThenRightPassword(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "right pw")
	phone := s.Login(t, "alice", "right pw")
	path := "/_matrix/client/v3/devices/" + phone.DeviceID

	session := wantUIAChallenge(t, "no auth", alice.Do("DELETE", path, nil), passwordFlows, nil)

	r := alice.Do("DELETE", path, map[string]any{"auth": servertest.PasswordAuth(session, alice.UserID, "wrong pw")})
	if got := wantUIAChallenge(t, "wrong password", r, passwordFlows, nil); got != session {
		t.Fatalf("wrong password changed the session from %q to %q", session, got)
	}
	wantMatrixErr(t, "wrong password", r, 401, "M_FORBIDDEN")
	phone.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)

	// Someone else's correct password does not prove alice's identity:
	// a plain 403, as Synapse answers (Complement: "DELETE
	// /device/{deviceId} requires UI auth user to match device owner").
	bob := s.Register(t, "bob", "bob pw")
	r = alice.Do("DELETE", path, map[string]any{"auth": servertest.PasswordAuth(session, bob.UserID, "bob pw")})
	wantMatrixErr(t, "another user's password", r, 403, "M_FORBIDDEN")
	phone.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)

	alice.Must(200, "DELETE", path, map[string]any{"auth": servertest.PasswordAuth(session, "alice", "right pw")})
	wantMatrixErr(t, "deleted device", phone.Do("GET", "/_matrix/client/v3/account/whoami", nil), 401, "M_UNKNOWN_TOKEN")
	devs := alice.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	if list, _ := devs.JSON["devices"].([]any); len(list) != 1 {
		t.Fatalf("devices after deleting one of two: %s", devs)
	}
	wantMatrixErr(t, "GET deleted device", alice.Do("GET", path, nil), 404, "M_NOT_FOUND")
}

// Spec: "User-Interactive Authentication API". A client that double-submits
// a stage (two tabs, a retry after a timeout) sends the same session at
// once; every answer is still a proper one, never a 500, and the requests
// together do only what was asked.
func TestUIAConcurrentRequestsInOneSession(t *testing.T) {
	s := servertest.Start(t, servertest.Options{RealArgon2: true})
	const n = 8
	// concurrently sends n requests at once and returns the responses.
	concurrently := func(send func(i int) *servertest.Response) []*servertest.Response {
		out := make([]*servertest.Response, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				out[i] = send(i)
			})
		}
		close(start)
		wg.Wait()
		return out
	}
	check := func(what string, rs []*servertest.Response) {
		t.Helper()
		ok := 0
		for _, r := range rs {
			switch {
			case r.Status == 200:
				ok++
			case r.Status >= 500 || r.Errcode() == "":
				t.Errorf("%s: %s", what, r)
			}
		}
		if ok == 0 {
			t.Errorf("%s: no request completed the session", what)
		}
	}

	t.Run("register", func(t *testing.T) {
		anon := s.Client(t)
		session := wantUIAChallenge(t, "start", anon.Do("POST", registerPath, map[string]any{"username": "racer0"}), dummyFlows, nil)
		rs := concurrently(func(i int) *servertest.Response {
			return s.Client(t).Do("POST", registerPath, map[string]any{
				"username": fmt.Sprintf("racer%d", i), "password": "pw",
				"auth": map[string]any{"type": "m.login.dummy", "session": session},
			})
		})
		check("register", rs)
		for _, r := range rs {
			if r.Status == 200 && (!strings.HasPrefix(r.Str("user_id"), "@racer") || r.Str("access_token") == "") {
				t.Errorf("register: %s", r)
			}
		}
	})

	t.Run("delete device", func(t *testing.T) {
		alice := s.Register(t, "alice", "pw")
		phone := s.Login(t, "alice", "pw")
		path := "/_matrix/client/v3/devices/" + phone.DeviceID
		session := wantUIAChallenge(t, "start", alice.Do("DELETE", path, nil), passwordFlows, nil)
		check("delete device", concurrently(func(int) *servertest.Response {
			return alice.Do("DELETE", path, map[string]any{"auth": servertest.PasswordAuth(session, alice.UserID, "pw")})
		}))
		wantMatrixErr(t, "deleted device", phone.Do("GET", "/_matrix/client/v3/account/whoami", nil), 401, "M_UNKNOWN_TOKEN")
		alice.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	})
}
