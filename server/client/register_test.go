package client_test

import (
	"encoding/json"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"hearth/server/servertest"
	"hearth/store"
)

const registerPath = "/_matrix/client/v3/register"

// wantMatrixErr fails the test unless r is a Matrix error with the given
// HTTP status and errcode.
func wantMatrixErr(t *testing.T, what string, r *servertest.Response, status int, errcode string) {
	t.Helper()
	if r.Status != status || r.Errcode() != errcode {
		t.Fatalf("%s: want %d %s, got %s", what, status, errcode, r)
	}
	if _, ok := r.JSON["error"].(string); !ok {
		t.Fatalf("%s: error response without an error message: %s", what, r)
	}
}

// wantUIAChallenge fails the test unless r is the spec's UIA 401 response
// offering exactly flows, with params, a session and the completed stages;
// it returns the session ID.
func wantUIAChallenge(t *testing.T, what string, r *servertest.Response, flows [][]string, completed []string) string {
	t.Helper()
	if r.Status != 401 {
		t.Fatalf("%s: want a 401 UIA challenge, got %s", what, r)
	}
	var body struct {
		Flows []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
		Params    map[string]any `json:"params"`
		Session   string         `json:"session"`
		Completed []string       `json:"completed"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: UIA body: %v: %s", what, err, r)
	}
	var got [][]string
	for _, f := range body.Flows {
		got = append(got, f.Stages)
	}
	if !reflect.DeepEqual(got, flows) {
		t.Fatalf("%s: want flows %v, got %v: %s", what, flows, got, r)
	}
	if body.Params == nil || body.Session == "" {
		t.Fatalf("%s: UIA response without params or session: %s", what, r)
	}
	if len(body.Completed) != len(completed) || (len(completed) > 0 && !reflect.DeepEqual(body.Completed, completed)) {
		t.Fatalf("%s: want completed %v, got %v: %s", what, completed, body.Completed, r)
	}
	return body.Session
}

var dummyFlows = [][]string{{"m.login.dummy"}}
var regTokenFlows = [][]string{{"m.login.registration_token"}}

// putRegToken stores a registration token as the admin API would.
func putRegToken(t *testing.T, s *servertest.Server, tok store.RegToken) {
	t.Helper()
	if err := s.Store().Update(func(tx *store.Tx) error { return tx.PutRegToken(&tok) }); err != nil {
		t.Fatalf("put registration token: %v", err)
	}
}

// Spec: Client-Server API, "Account registration" (POST /register) and
// "User-Interactive Authentication API": the first call without auth is
// answered 401 with flows, params and a session; the client then completes
// m.login.dummy in that session and gets a logged-in account.
func TestRegisterDummyTwoStep(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	body := map[string]any{"username": "carol", "password": "s3cret pass"}
	r := c.Do("POST", registerPath, body)
	session := wantUIAChallenge(t, "register without auth", r, dummyFlows, nil)
	if _, ok := r.JSON["errcode"]; ok {
		t.Fatalf("first UIA challenge carries an errcode: %s", r)
	}

	body["auth"] = map[string]any{"type": "m.login.dummy", "session": session}
	r = c.Must(200, "POST", registerPath, body)
	if r.Str("user_id") != "@carol:localhost" || r.Str("access_token") == "" || r.Str("device_id") == "" {
		t.Fatalf("register: %s", r)
	}
	if _, ok := r.JSON["refresh_token"]; ok {
		t.Fatalf("refresh token without asking for one: %s", r)
	}
	c.Token = r.Str("access_token")
	w := c.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	if w.Str("user_id") != "@carol:localhost" || w.Str("device_id") != r.Str("device_id") {
		t.Fatalf("whoami: %s", w)
	}
	// The new account logs in with its password.
	s.Login(t, "carol", "s3cret pass")

	// Replaying the finished session does not make another account.
	body["username"] = "carol2"
	r = c.Do("POST", registerPath, body)
	if r.Status == 200 && r.Str("user_id") != "@carol:localhost" {
		t.Fatalf("completed UIA session made a second account: %s", r)
	}
	c.Must(200, "GET", "/_matrix/client/v3/register/available?username=carol2", nil)
}

// Spec: "Account registration"; Synapse accepts auth without a session and
// Complement registers that way: one call, m.login.dummy, no session.
func TestRegisterDummySingleStep(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "POST", registerPath, map[string]any{
		"username": "dave", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"},
	})
	if r.Str("user_id") != "@dave:localhost" || r.Str("access_token") == "" || r.Str("device_id") == "" {
		t.Fatalf("register: %s", r)
	}
}

// Spec: "Account registration", "Token-authenticated registration"
// (m.login.registration_token). A server with closed registration offers
// only the token stage; m.login.dummy is refused.
func TestRegisterClosedOffersOnlyToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{ClosedRegistration: true})
	c := s.Client(t)
	r := c.Do("POST", registerPath, map[string]any{"username": "eve", "password": "pw"})
	session := wantUIAChallenge(t, "closed register without auth", r, regTokenFlows, nil)

	for _, auth := range []map[string]any{
		{"type": "m.login.dummy", "session": session},
		{"type": "m.login.dummy"},
	} {
		r = c.Do("POST", registerPath, map[string]any{"username": "eve", "password": "pw", "auth": auth})
		wantUIAChallenge(t, "closed register with m.login.dummy", r, regTokenFlows, nil)
		if r.Errcode() == "" {
			t.Fatalf("refused stage without an errcode: %s", r)
		}
	}
	// Nothing was created.
	c.Must(200, "GET", "/_matrix/client/v3/register/available?username=eve", nil)
}

// Spec: "Token-authenticated registration". The bootstrap token a closed
// server prints on first start registers the first account, which becomes
// the admin; a wrong token is a 401 M_UNAUTHORIZED that keeps the UIA
// state, and a one-time token cannot be used twice.
func TestRegisterWithToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{ClosedRegistration: true})
	boot := s.BootstrapToken()
	if boot == "" {
		t.Fatal("closed server has no bootstrap token")
	}
	c := s.Client(t)
	body := map[string]any{"username": "admin", "password": "pw"}
	session := wantUIAChallenge(t, "start", c.Do("POST", registerPath, body), regTokenFlows, nil)

	body["auth"] = map[string]any{"type": "m.login.registration_token", "token": "not-a-token", "session": session}
	r := c.Do("POST", registerPath, body)
	if got := wantUIAChallenge(t, "bad token", r, regTokenFlows, nil); got != session {
		t.Fatalf("bad token changed the session from %q to %q", session, got)
	}
	wantMatrixErr(t, "bad token", r, 401, "M_UNAUTHORIZED")

	// The same session goes on with the right token.
	body["auth"] = map[string]any{"type": "m.login.registration_token", "token": boot, "session": session}
	r = c.Must(200, "POST", registerPath, body)
	if r.Str("user_id") != "@admin:localhost" || r.Str("access_token") == "" {
		t.Fatalf("register with bootstrap token: %s", r)
	}
	u, err := s.Accounts().User("admin")
	if err != nil || !u.Admin {
		t.Fatalf("account registered with the bootstrap token is not an admin: %+v %v", u, err)
	}

	// The bootstrap token was for one use.
	body = map[string]any{"username": "second", "password": "pw",
		"auth": map[string]any{"type": "m.login.registration_token", "token": boot}}
	r = c.Do("POST", registerPath, body)
	wantUIAChallenge(t, "reused bootstrap token", r, regTokenFlows, nil)
	wantMatrixErr(t, "reused bootstrap token", r, 401, "M_UNAUTHORIZED")

	// An ordinary one-time token: used once, refused the second time, and
	// its account is not an admin.
	one := 1
	putRegToken(t, s, store.RegToken{Token: "family-2024", UsesAllowed: &one})
	body["auth"] = map[string]any{"type": "m.login.registration_token", "token": "family-2024"}
	c.Must(200, "POST", registerPath, body)
	if u, err := s.Accounts().User("second"); err != nil || u.Admin {
		t.Fatalf("account registered with an ordinary token: %+v %v", u, err)
	}
	body["username"] = "third"
	r = c.Do("POST", registerPath, body)
	wantMatrixErr(t, "reused one-time token", r, 401, "M_UNAUTHORIZED")
	c.Must(200, "GET", "/_matrix/client/v3/register/available?username=third", nil)
}

// Spec: "Token-authenticated registration", GET
// /_matrix/client/v1/register/m.login.registration_token/validity.
func TestRegistrationTokenValidity(t *testing.T) {
	s := servertest.Start(t, servertest.Options{ClosedRegistration: true})
	one := 1
	putRegToken(t, s, store.RegToken{Token: "once", UsesAllowed: &one})
	putRegToken(t, s, store.RegToken{Token: "expired", ExpiryTS: 1})
	putRegToken(t, s, store.RegToken{Token: "unlimited"})
	c := s.Client(t)
	const path = "/_matrix/client/v1/register/m.login.registration_token/validity"

	for _, tc := range []struct {
		token string
		valid bool
	}{
		{s.BootstrapToken(), true},
		{"once", true},
		{"unlimited", true},
		{"expired", false},
		{"no-such-token", false},
	} {
		t.Run(tc.token, func(t *testing.T) {
			r := c.Must(200, "GET", path+"?token="+url.QueryEscape(tc.token), nil)
			if r.JSON["valid"] != tc.valid {
				t.Fatalf("want valid %v, got %s", tc.valid, r)
			}
		})
	}

	t.Run("used up", func(t *testing.T) {
		c.Must(200, "POST", registerPath, map[string]any{"username": "frank", "password": "pw",
			"auth": map[string]any{"type": "m.login.registration_token", "token": "once"}})
		r := c.Must(200, "GET", path+"?token=once", nil)
		if r.JSON["valid"] != false {
			t.Fatalf("used-up token still valid: %s", r)
		}
	})

	for _, q := range []string{"", "?token="} {
		t.Run("missing token "+q, func(t *testing.T) {
			wantMatrixErr(t, "validity without token", c.Do("GET", path+q, nil), 400, "M_MISSING_PARAM")
		})
	}
}

// Spec: "Account registration", inhibit_login: the account is made but
// not logged in.
func TestRegisterInhibitLogin(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "POST", registerPath, map[string]any{
		"username": "grace", "password": "pw", "inhibit_login": true, "refresh_token": true,
		"auth": map[string]any{"type": "m.login.dummy"},
	})
	if r.Str("user_id") != "@grace:localhost" {
		t.Fatalf("register: %s", r)
	}
	for _, k := range []string{"access_token", "device_id", "refresh_token", "expires_in_ms"} {
		if _, ok := r.JSON[k]; ok {
			t.Fatalf("inhibit_login response has %s: %s", k, r)
		}
	}
	// The account exists and can log in; that login is its only device.
	c := s.Login(t, "grace", "pw")
	d := c.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	if devs, _ := d.JSON["devices"].([]any); len(devs) != 1 {
		t.Fatalf("devices after inhibited registration and one login: %s", d)
	}
}

// Spec: "Account registration": device_id and initial_device_display_name
// name the device the registration logs in ("Device management", GET
// /devices, shows it).
func TestRegisterDeviceIDAndDisplayName(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	r := c.Must(200, "POST", registerPath, map[string]any{
		"username": "heidi", "password": "pw", "device_id": "KITCHENTAB", "initial_device_display_name": "Kitchen tablet",
		"auth": map[string]any{"type": "m.login.dummy"},
	})
	if r.Str("device_id") != "KITCHENTAB" {
		t.Fatalf("register ignored device_id: %s", r)
	}
	c.Token = r.Str("access_token")
	d := c.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	devs, _ := d.JSON["devices"].([]any)
	if len(devs) != 1 {
		t.Fatalf("devices: %s", d)
	}
	dev, _ := devs[0].(map[string]any)
	if dev["device_id"] != "KITCHENTAB" || dev["display_name"] != "Kitchen tablet" {
		t.Fatalf("device: %s", d)
	}
	one := c.Must(200, "GET", "/_matrix/client/v3/devices/KITCHENTAB", nil)
	if one.Str("display_name") != "Kitchen tablet" {
		t.Fatalf("GET /devices/KITCHENTAB: %s", one)
	}
}

// Spec: "Account registration", kind=guest; guest access is off in Hearth.
func TestRegisterGuestForbidden(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Do("POST", registerPath+"?kind=guest", map[string]any{})
	wantMatrixErr(t, "guest registration", r, 403, "M_FORBIDDEN")
	s.Client(t).Must(200, "POST", registerPath+"?kind=user", map[string]any{
		"username": "ivan", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
}

// A registration without a password is refused after UIA, as Synapse does:
// the account could never log in. A bare {} still gets the flows.
func TestRegisterNeedsPassword(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	wantUIAChallenge(t, "bare {}", c.Do("POST", registerPath, map[string]any{}), [][]string{{"m.login.dummy"}}, nil)
	wantMatrixErr(t, "no password", c.Do("POST", registerPath, map[string]any{
		"username": "nopw", "auth": map[string]any{"type": "m.login.dummy"}}), 400, "M_MISSING_PARAM")
	wantMatrixErr(t, "password too long", c.Do("POST", registerPath, map[string]any{
		"username": "longpw", "password": strings.Repeat("p", 513)}), 400, "M_INVALID_PARAM")
	if r := c.Do("GET", "/_matrix/client/v3/register/available?username=nopw", nil); r.Status != 200 {
		t.Fatalf("a refused registration left an account: %s", r)
	}
}

// Spec: "Account registration": a taken username is 400 M_USER_IN_USE,
// and (as in Synapse) the client learns it before any UIA stage, in any
// letter case.
func TestRegisterUsernameTaken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Register(t, "judy", "pw")
	c := s.Client(t)
	for _, name := range []string{"judy", "JUDY", "Judy"} {
		t.Run(name, func(t *testing.T) {
			wantMatrixErr(t, "no auth", c.Do("POST", registerPath, map[string]any{"username": name, "password": "x"}), 400, "M_USER_IN_USE")
			wantMatrixErr(t, "with auth", c.Do("POST", registerPath, map[string]any{"username": name, "password": "x",
				"auth": map[string]any{"type": "m.login.dummy"}}), 400, "M_USER_IN_USE")
		})
	}
	// A deactivated account keeps its name.
	k := s.Register(t, "kim", "pw")
	k.Must(200, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{"auth": servertest.PasswordAuth("", k.UserID, "pw")})
	wantMatrixErr(t, "deactivated name", c.Do("POST", registerPath, map[string]any{"username": "kim",
		"auth": map[string]any{"type": "m.login.dummy"}}), 400, "M_USER_IN_USE")
}

// Spec: "Account registration" and the appendix "User Identifiers": a
// localpart is a-z, 0-9 and ._=-/+ (and Synapse reserves names starting
// with _ and all-digit names); the whole ID is at most 255 bytes.
func TestRegisterInvalidUsernames(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	for _, name := range []string{"a b", "é", "@x", "x:y", "", "_bot", "1234", "tab\tname", "a\x00b", strings.Repeat("a", 300)} {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			for _, auth := range []any{nil, map[string]any{"type": "m.login.dummy"}} {
				body := map[string]any{"username": name, "password": "pw"}
				if auth != nil {
					body["auth"] = auth
				}
				wantMatrixErr(t, "register", c.Do("POST", registerPath, body), 400, "M_INVALID_USERNAME")
			}
		})
	}
	// The longest name that fits: "@" + 245 + ":localhost" is 255 bytes.
	long := strings.Repeat("b", 255-len("@:localhost"))
	c.Must(200, "POST", registerPath, map[string]any{"username": long, "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	wantMatrixErr(t, "256 bytes", c.Do("POST", registerPath, map[string]any{"username": long + "c",
		"auth": map[string]any{"type": "m.login.dummy"}}), 400, "M_INVALID_USERNAME")
}

// Synapse/sytest "POST /register downcases capitals in usernames".
func TestRegisterDowncasesUsername(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "POST", registerPath, map[string]any{
		"username": "Leo.Upper", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"},
	})
	if r.Str("user_id") != "@leo.upper:localhost" {
		t.Fatalf("register Leo.Upper: %s", r)
	}
	s.Login(t, "leo.upper", "pw")
}

// Spec: "Account registration": without a username the server generates
// the localpart.
func TestRegisterGeneratesUsername(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	seen := map[string]bool{}
	for range 3 {
		r := c.Must(200, "POST", registerPath, map[string]any{"password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
		id := r.Str("user_id")
		if !regexp.MustCompile(`^@[a-z0-9._=\-/+]+:localhost$`).MatchString(id) || r.Str("access_token") == "" || seen[id] {
			t.Fatalf("register without username: %s", r)
		}
		seen[id] = true
		s.Login(t, id, "pw")
	}
}

// Spec: "Account registration" and "Refreshing access tokens": a client
// that sends refresh_token: true gets a refresh token and expires_in_ms.
func TestRegisterRefreshToken(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "POST", registerPath, map[string]any{
		"username": "mallory", "password": "pw", "refresh_token": true, "auth": map[string]any{"type": "m.login.dummy"},
	})
	if r.Str("refresh_token") == "" || r.Str("access_token") == "" {
		t.Fatalf("register with refresh_token: %s", r)
	}
	if ms, _ := r.JSON["expires_in_ms"].(float64); ms <= 0 {
		t.Fatalf("register with refresh_token: no positive expires_in_ms: %s", r)
	}
	c := s.Client(t)
	rr := c.Must(200, "POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": r.Str("refresh_token")})
	c.Token = rr.Str("access_token")
	c.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
}

// Spec: "Account registration", GET /register/available.
func TestRegisterAvailable(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Register(t, "niaj", "pw")
	c := s.Client(t)
	for _, tc := range []struct {
		name, query string
		status      int
		errcode     string
	}{
		{"free", "?username=olivia", 200, ""},
		{"taken", "?username=niaj", 400, "M_USER_IN_USE"},
		{"taken, other case", "?username=NIAJ", 400, "M_USER_IN_USE"},
		{"invalid", "?username=" + url.QueryEscape("a b"), 400, "M_INVALID_USERNAME"},
		{"reserved", "?username=_bot", 400, "M_INVALID_USERNAME"},
		{"empty", "?username=", 400, "M_INVALID_USERNAME"},
		{"missing", "", 400, "M_MISSING_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do("GET", "/_matrix/client/v3/register/available"+tc.query, nil)
			if tc.status == 200 {
				if r.Status != 200 || r.JSON["available"] != true {
					t.Fatalf("want available: %s", r)
				}
				return
			}
			wantMatrixErr(t, "available", r, tc.status, tc.errcode)
		})
	}
}

// Spec: "Rate limiting": a client registering too often from one address
// gets 429 M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header.
func TestRegisterRateLimit(t *testing.T) {
	s := servertest.Start(t, servertest.Options{RateLimit: true})
	c := s.Client(t)
	for i := range 50 {
		r := c.Do("POST", registerPath, map[string]any{"username": servertest.UniqueName("rl"), "password": "pw"})
		if r.Status == 401 {
			continue // UIA challenge: still allowed
		}
		wantRateLimited(t, r)
		if i == 0 {
			t.Fatal("rate limited on the first request")
		}
		return
	}
	t.Fatal("50 registrations from one address were never rate limited")
}

// wantRateLimited checks a 429 response as the spec describes it.
func wantRateLimited(t *testing.T, r *servertest.Response) {
	t.Helper()
	wantMatrixErr(t, "rate limited", r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.JSON["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("429 without a positive retry_after_ms: %s", r)
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs <= 0 {
		t.Fatalf("429 with Retry-After %q", r.Header.Get("Retry-After"))
	}
}
