package client_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
)

const (
	loginPath  = "/_matrix/client/v3/login"
	whoamiPath = "/_matrix/client/v3/account/whoami"
)

// passwordLogin is the body of an m.login.password login as user.
func passwordLogin(user, password string) map[string]any {
	return map[string]any{
		"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user},
	}
}

// deviceIDs returns the device IDs GET /devices lists for c.
func deviceIDs(t *testing.T, c *servertest.Client) []string {
	t.Helper()
	r := c.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	devs, _ := r.JSON["devices"].([]any)
	var ids []string
	for _, d := range devs {
		m, _ := d.(map[string]any)
		id, _ := m["device_id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// Spec: "Login", GET /login lists the supported login types.
func TestLoginFlows(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "GET", loginPath, nil)
	flows, _ := r.JSON["flows"].([]any)
	found := false
	for _, f := range flows {
		if m, _ := f.(map[string]any); m["type"] == "m.login.password" {
			found = true
		}
	}
	if !found {
		t.Fatalf("GET /login does not offer m.login.password: %s", r)
	}
}

// Spec: "Login", "Identifier types" (m.id.user) and the deprecated
// top-level "user" field; Complement: login works with an upper-case user
// ID and whoami answers with the canonical lower-case one.
func TestLoginIdentifiers(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Register(t, "alice", "alice pw")
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"localpart", passwordLogin("alice", "alice pw")},
		{"full user ID", passwordLogin("@alice:localhost", "alice pw")},
		{"upper-case user ID", passwordLogin("@ALICE:localhost", "alice pw")},
		{"upper-case localpart", passwordLogin("Alice", "alice pw")},
		{"legacy user field", map[string]any{"type": "m.login.password", "user": "alice", "password": "alice pw"}},
		{"legacy user field, full ID", map[string]any{"type": "m.login.password", "user": "@alice:localhost", "password": "alice pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.Client(t)
			r := c.Must(200, "POST", loginPath, tc.body)
			if r.Str("user_id") != "@alice:localhost" || r.Str("access_token") == "" || r.Str("device_id") == "" {
				t.Fatalf("login: %s", r)
			}
			if _, ok := r.JSON["expires_in_ms"]; ok {
				t.Fatalf("login without refresh_token has expires_in_ms: %s", r)
			}
			c.Token = r.Str("access_token")
			w := c.Must(200, "GET", whoamiPath, nil)
			if w.Str("user_id") != "@alice:localhost" || w.Str("device_id") != r.Str("device_id") {
				t.Fatalf("whoami: %s", w)
			}
		})
	}
}

// Spec: "Login": 403 M_FORBIDDEN for a wrong user or password (the same
// answer, so it does not tell which accounts exist), 400 for a login type
// or identifier the server does not support.
func TestLoginFailures(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Register(t, "alice", "alice pw")
	c := s.Client(t)
	for _, tc := range []struct {
		name    string
		body    map[string]any
		status  int
		errcode string
	}{
		{"wrong password", passwordLogin("alice", "wrong"), 403, "M_FORBIDDEN"},
		{"empty password", passwordLogin("alice", ""), 403, "M_FORBIDDEN"},
		{"unknown user", passwordLogin("nobody", "alice pw"), 403, "M_FORBIDDEN"},
		{"user of another server", passwordLogin("@alice:elsewhere.example", "alice pw"), 403, "M_FORBIDDEN"},
		{"unknown login type", map[string]any{"type": "m.login.carrier_pigeon", "user": "alice", "password": "alice pw"}, 400, "M_UNKNOWN"},
		{"no login type", map[string]any{"user": "alice", "password": "alice pw"}, 400, "M_UNKNOWN"},
		{"third-party identifier", map[string]any{"type": "m.login.password", "password": "alice pw",
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}}, 400, "M_UNKNOWN"},
		{"no identifier", map[string]any{"type": "m.login.password", "password": "alice pw"}, 400, "M_MISSING_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do("POST", loginPath, tc.body)
			wantMatrixErr(t, "login", r, tc.status, tc.errcode)
			if _, ok := r.JSON["access_token"]; ok {
				t.Fatalf("failed login has an access token: %s", r)
			}
		})
	}
}

// Spec: "Login" and "Account deactivation": a deactivated account cannot
// log in: 403 M_USER_DEACTIVATED.
func TestLoginDeactivated(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Register(t, "alice", "alice pw")
	r := c.Must(200, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{
		"auth": servertest.PasswordAuth("", c.UserID, "alice pw")})
	if r.Str("id_server_unbind_result") == "" {
		t.Fatalf("deactivate: %s", r)
	}
	wantMatrixErr(t, "deactivated account's token", c.Do("GET", whoamiPath, nil), 401, "M_UNKNOWN_TOKEN")
	wantMatrixErr(t, "login", s.Client(t).Do("POST", loginPath, passwordLogin("alice", "alice pw")), 403, "M_USER_DEACTIVATED")
}

// Spec: "Login", device_id: logging in with a known device ID keeps the
// device and replaces its access token; the old token is revoked.
func TestLoginExistingDeviceID(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	first := s.Client(t)
	body := passwordLogin("alice", "alice pw")
	s.Register(t, "alice", "alice pw")
	body["device_id"] = "PHONE"
	body["initial_device_display_name"] = "Alice's phone"
	r := first.Must(200, "POST", loginPath, body)
	if r.Str("device_id") != "PHONE" {
		t.Fatalf("login ignored device_id: %s", r)
	}
	first.Token = r.Str("access_token")

	again := s.Client(t)
	body["initial_device_display_name"] = "renamed?"
	r = again.Must(200, "POST", loginPath, body)
	if r.Str("device_id") != "PHONE" || r.Str("access_token") == first.Token {
		t.Fatalf("second login on PHONE: %s", r)
	}
	again.Token = r.Str("access_token")
	w := again.Must(200, "GET", whoamiPath, nil)
	if w.Str("device_id") != "PHONE" {
		t.Fatalf("whoami: %s", w)
	}
	r = first.Do("GET", whoamiPath, nil)
	wantMatrixErr(t, "replaced token", r, 401, "M_UNKNOWN_TOKEN")
	if r.JSON["soft_logout"] == true {
		t.Fatalf("a replaced token is not a soft logout: %s", r)
	}
	ids := deviceIDs(t, again)
	if len(ids) != 2 { // the registration's device and PHONE
		t.Fatalf("devices: %v", ids)
	}
	d := again.Must(200, "GET", "/_matrix/client/v3/devices/PHONE", nil)
	if d.Str("display_name") != "Alice's phone" {
		t.Fatalf("device PHONE: %s", d)
	}
}

// Spec: "Login": each login without a device ID is a new device.
func TestLoginTwoDevices(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Client(t).Must(200, "POST", registerPath, map[string]any{"username": "alice", "password": "pw",
		"inhibit_login": true, "auth": map[string]any{"type": "m.login.dummy"}})
	a := s.Login(t, "alice", "pw")
	b := s.Login(t, "alice", "pw")
	if a.DeviceID == b.DeviceID || a.Token == b.Token {
		t.Fatalf("two logins share device %q / a token", a.DeviceID)
	}
	for _, c := range []*servertest.Client{a, b} {
		if w := c.Must(200, "GET", whoamiPath, nil); w.Str("device_id") != c.DeviceID {
			t.Fatalf("whoami: %s", w)
		}
	}
	ids := deviceIDs(t, a)
	if len(ids) != 2 || (ids[0] != a.DeviceID && ids[1] != a.DeviceID) || (ids[0] != b.DeviceID && ids[1] != b.DeviceID) {
		t.Fatalf("devices %v, want %s and %s", ids, a.DeviceID, b.DeviceID)
	}
}

// Spec: "Refreshing access tokens" and "Soft logout": a refreshable access
// token expires after its lifetime and is then refused with soft_logout;
// POST /refresh trades the refresh token for a new pair, after which the
// old refresh token is refused; logout still works with an expired token;
// a token of a client that did not ask for refresh never expires.
func TestRefreshAndExpiry(t *testing.T) {
	const lifetime = 300 * time.Millisecond
	s := servertest.Start(t, servertest.Options{AccessTokenLifetime: lifetime})
	s.Register(t, "alice", "pw")

	// login logs alice in and returns the client and when its access
	// token was issued at the latest.
	login := func(refresh bool) (*servertest.Client, time.Time) {
		c := s.Client(t)
		body := passwordLogin("alice", "pw")
		body["refresh_token"] = refresh
		r := c.Must(200, "POST", loginPath, body)
		issued := time.Now()
		c.Token, c.Refresh, c.DeviceID = r.Str("access_token"), r.Str("refresh_token"), r.Str("device_id")
		ms, hasExpiry := r.JSON["expires_in_ms"].(float64)
		switch {
		case refresh && (c.Refresh == "" || !hasExpiry || ms <= 0 || ms > float64(lifetime.Milliseconds())):
			t.Fatalf("login with refresh_token: %s", r)
		case !refresh && (c.Refresh != "" || hasExpiry):
			t.Fatalf("login without refresh_token: %s", r)
		}
		return c, issued
	}
	// sleepPast sleeps until a token issued at issued has surely expired.
	sleepPast := func(issued time.Time) {
		time.Sleep(time.Until(issued.Add(lifetime + 100*time.Millisecond)))
	}
	wantSoftLogout := func(what string, c *servertest.Client) {
		t.Helper()
		r := c.Do("GET", whoamiPath, nil)
		wantMatrixErr(t, what, r, 401, "M_UNKNOWN_TOKEN")
		if r.JSON["soft_logout"] != true {
			t.Fatalf("%s: want soft_logout true: %s", what, r)
		}
	}
	wantHardLogout := func(what string, c *servertest.Client) {
		t.Helper()
		r := c.Do("GET", whoamiPath, nil)
		wantMatrixErr(t, what, r, 401, "M_UNKNOWN_TOKEN")
		if r.JSON["soft_logout"] == true {
			t.Fatalf("%s: a revoked token is not a soft logout: %s", what, r)
		}
	}
	refresh := func(token string) *servertest.Response {
		return s.Client(t).Do("POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": token})
	}

	t.Run("expire and refresh", func(t *testing.T) {
		c, issued := login(true)
		c.Must(200, "GET", whoamiPath, nil)
		sleepPast(issued)
		wantSoftLogout("expired token", c)

		oldRefresh, oldAccess := c.Refresh, c.Token
		r := refresh(oldRefresh)
		if r.Status != 200 || r.Str("access_token") == "" || r.Str("refresh_token") == "" ||
			r.Str("access_token") == oldAccess || r.Str("refresh_token") == oldRefresh {
			t.Fatalf("refresh: %s", r)
		}
		if ms, _ := r.JSON["expires_in_ms"].(float64); ms <= 0 {
			t.Fatalf("refresh without expires_in_ms: %s", r)
		}
		c.Token, c.Refresh = r.Str("access_token"), r.Str("refresh_token")
		if w := c.Must(200, "GET", whoamiPath, nil); w.Str("device_id") != c.DeviceID || w.Str("user_id") != "@alice:localhost" {
			t.Fatalf("whoami after refresh: %s", w)
		}
		// The new pair is in use, so the old refresh token is dead.
		wantMatrixErr(t, "old refresh token", refresh(oldRefresh), 401, "M_UNKNOWN_TOKEN")
		// The new refresh token works in turn.
		r = refresh(c.Refresh)
		if r.Status != 200 {
			t.Fatalf("second refresh: %s", r)
		}
		c.Token, c.Refresh = r.Str("access_token"), r.Str("refresh_token")
		c.Must(200, "GET", whoamiPath, nil)
	})

	t.Run("bad refresh tokens", func(t *testing.T) {
		wantMatrixErr(t, "unknown refresh token", refresh("hrt_nonsense"), 401, "M_UNKNOWN_TOKEN")
		c, _ := login(true)
		// An access token is not a refresh token.
		wantMatrixErr(t, "access token as refresh token", refresh(c.Token), 401, "M_UNKNOWN_TOKEN")
		r := s.Client(t).Do("POST", "/_matrix/client/v3/refresh", map[string]any{})
		if r.Status != 400 {
			t.Fatalf("refresh without a token: want 400, got %s", r)
		}
		c.Must(200, "GET", whoamiPath, nil)
	})

	t.Run("logout with an expired token", func(t *testing.T) {
		c, issued := login(true)
		other, _ := login(false)
		sleepPast(issued)
		wantSoftLogout("expired token", c)
		c.Must(200, "POST", "/_matrix/client/v3/logout", nil)
		// Now the token is revoked, not merely expired, and its refresh
		// token went with the device.
		wantHardLogout("logged-out token", c)
		wantMatrixErr(t, "refresh after logout", refresh(c.Refresh), 401, "M_UNKNOWN_TOKEN")
		for _, id := range deviceIDs(t, other) {
			if id == c.DeviceID {
				t.Fatalf("logged-out device %s still listed", id)
			}
		}
	})

	t.Run("logout all with an expired token", func(t *testing.T) {
		c, issued := login(true)
		other, _ := login(false)
		sleepPast(issued)
		c.Must(200, "POST", "/_matrix/client/v3/logout/all", nil)
		wantHardLogout("expired token after logout/all", c)
		wantHardLogout("other device after logout/all", other)
	})

	t.Run("revoked token", func(t *testing.T) {
		c, _ := login(true)
		c.Must(200, "POST", "/_matrix/client/v3/logout", nil)
		wantHardLogout("logged-out token", c)
		wantMatrixErr(t, "logout again", c.Do("POST", "/_matrix/client/v3/logout", nil), 401, "M_UNKNOWN_TOKEN")
	})

	t.Run("no refresh, no expiry", func(t *testing.T) {
		c, issued := login(false)
		sleepPast(issued)
		c.Must(200, "GET", whoamiPath, nil)
		// And across a restart.
		s.Restart(t)
		c.URL = s.URL
		c.Must(200, "GET", whoamiPath, nil)
	})
}

// Spec: "Login", POST /logout and POST /logout/all: logout ends one
// device and its token, logout/all every device of the user, and other
// users are untouched.
func TestLogout(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	a1 := s.Register(t, "alice", "pw")
	a2 := s.Login(t, "alice", "pw")
	a3 := s.Login(t, "alice", "pw")
	bob := s.Register(t, "bob", "pw")

	a1.Must(200, "GET", whoamiPath, nil) // seen before: nothing remembered of it may outlive the logout
	a1.Must(200, "POST", "/_matrix/client/v3/logout", nil)
	wantMatrixErr(t, "logged-out token", a1.Do("GET", whoamiPath, nil), 401, "M_UNKNOWN_TOKEN")
	a2.Must(200, "GET", whoamiPath, nil)
	ids := deviceIDs(t, a2)
	if len(ids) != 2 {
		t.Fatalf("devices after logging one of three out: %v", ids)
	}
	for _, id := range ids {
		if id == a1.DeviceID {
			t.Fatalf("logged-out device %s still listed", id)
		}
	}

	a2.Must(200, "POST", "/_matrix/client/v3/logout/all", nil)
	for _, c := range []*servertest.Client{a2, a3} {
		wantMatrixErr(t, "token after logout/all", c.Do("GET", whoamiPath, nil), 401, "M_UNKNOWN_TOKEN")
	}
	bob.Must(200, "GET", whoamiPath, nil)
	// The account itself is fine: it logs in again, with one device.
	a4 := s.Login(t, "alice", "pw")
	if ids := deviceIDs(t, a4); len(ids) != 1 || ids[0] != a4.DeviceID {
		t.Fatalf("devices after logout/all and a new login: %v", ids)
	}
}

// Spec: "Client authentication": a request without a token to an
// endpoint that needs one is 401 M_MISSING_TOKEN; an unknown token is 401
// M_UNKNOWN_TOKEN.
func TestLogoutMissingToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	for _, path := range []string{"/_matrix/client/v3/logout", "/_matrix/client/v3/logout/all"} {
		t.Run(path, func(t *testing.T) {
			wantMatrixErr(t, "no token", c.Do("POST", path, nil), 401, "M_MISSING_TOKEN")
			bad := s.Client(t)
			bad.Token = "hat_not_a_token"
			wantMatrixErr(t, "unknown token", bad.Do("POST", path, nil), 401, "M_UNKNOWN_TOKEN")
		})
	}
}

// Spec: "Client authentication": the access token may travel in the
// access_token query parameter (deprecated, still used by older clients).
func TestAccessTokenQueryParameter(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	anon := s.Client(t)
	q := "?access_token=" + url.QueryEscape(alice.Token)
	r := anon.Must(200, "GET", whoamiPath+q, nil)
	if r.Str("user_id") != "@alice:localhost" {
		t.Fatalf("whoami with query token: %s", r)
	}
	wantMatrixErr(t, "unknown query token", anon.Do("GET", whoamiPath+"?access_token=hat_nope", nil), 401, "M_UNKNOWN_TOKEN")
	anon.Must(200, "POST", "/_matrix/client/v3/logout"+q, nil)
	wantMatrixErr(t, "query token after logout", anon.Do("GET", whoamiPath+q, nil), 401, "M_UNKNOWN_TOKEN")
}

// Spec: "Rate limiting": too many logins from one address are refused with
// 429 M_LIMIT_EXCEEDED, retry_after_ms and a Retry-After header, whatever
// account they try; so are too many attempts on one account.
func TestLoginRateLimit(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		s := servertest.Start(t, servertest.Options{RateLimit: true})
		s.Register(t, "alice", "pw")
		c := s.Client(t)
		for i := range 50 {
			// A different (unknown) account each time, so only the
			// address ties the attempts together.
			r := c.Do("POST", loginPath, passwordLogin(fmt.Sprintf("guess%d", i), "pw"))
			if r.Status == 403 {
				continue
			}
			wantRateLimited(t, r)
			if i == 0 {
				t.Fatal("rate limited on the first login")
			}
			return
		}
		t.Fatal("50 logins from one address were never rate limited")
	})
	t.Run("per account", func(t *testing.T) {
		s := servertest.Start(t, servertest.Options{RateLimit: true})
		s.Register(t, "alice", "pw")
		c := s.Client(t)
		for i := range 50 {
			r := c.Do("POST", loginPath, passwordLogin("alice", fmt.Sprintf("guess %d", i)))
			if r.Status == 403 {
				continue
			}
			wantRateLimited(t, r)
			// While limited, even the right password is refused.
			wantRateLimited(t, c.Do("POST", loginPath, passwordLogin("@ALICE:localhost", "pw")))
			return
		}
		t.Fatal("50 password guesses on one account were never rate limited")
	})
}
