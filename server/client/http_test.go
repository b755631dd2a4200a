package client_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"hearth/server/servertest"
)

// Bad input gets the spec's error, never a 500 (spec: "Standard error
// response" and "API Standards").
func TestBadInput(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")

	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	cases := []struct {
		name, method, path string
		token              string // "" anonymous, "alice" alice's token, else used as is
		body               any
		status             int
		errcode            string
	}{
		{"malformed JSON", "POST", "/_matrix/client/v3/login", "", `{"type": "m.login.password",`, 400, "M_NOT_JSON"},
		{"invalid UTF-8 in a string", "POST", "/_matrix/client/v3/register", "", "{ \"test\":\"a\x81\" }", 400, "M_NOT_JSON"},
		{"not JSON at all", "POST", "/_matrix/client/v3/register", "", "username=alice", 400, "M_NOT_JSON"},
		{"JSON array, not object", "POST", "/_matrix/client/v3/login", "", `["m.login.password"]`, 400, "M_BAD_JSON"},
		{"JSON string, not object", "PUT", "/_matrix/client/v3/profile/@alice:localhost/displayname", "alice", `"Alice"`, 400, "M_BAD_JSON"},
		{"wrong type: password number", "POST", "/_matrix/client/v3/login", "", `{"type":"m.login.password","user":"alice","password":12}`, 400, "M_BAD_JSON"},
		{"wrong type: username object", "POST", "/_matrix/client/v3/register", "", `{"username":{"x":1}}`, 400, "M_BAD_JSON"},
		{"wrong type: displayname bool", "PUT", "/_matrix/client/v3/profile/@alice:localhost/displayname", "alice", `{"displayname":true}`, 400, "M_BAD_JSON"},
		{"wrong type: devices not a list", "POST", "/_matrix/client/v3/delete_devices", "alice", `{"devices":"ABC"}`, 400, "M_BAD_JSON"},
		{"nested too deep", "PUT", "/_matrix/client/v3/devices/X", "alice", deep, 400, "M_BAD_JSON"},
		{"oversize body", "POST", "/_matrix/client/v3/login", "", `{"pad":"` + strings.Repeat("x", 3<<19) + `"}`, 413, "M_TOO_LARGE"},
		{"unknown token", "GET", "/_matrix/client/v3/account/whoami", "hat_not_a_real_token", nil, 401, "M_UNKNOWN_TOKEN"},
		{"missing token", "GET", "/_matrix/client/v3/account/whoami", "", nil, 401, "M_MISSING_TOKEN"},
		{"taken username", "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "alice", "password": "x", "auth": map[string]string{"type": "m.login.dummy"}}, 400, "M_USER_IN_USE"},
		{"invalid username", "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "al ice", "password": "x", "auth": map[string]string{"type": "m.login.dummy"}}, 400, "M_INVALID_USERNAME"},
		{"unknown endpoint", "GET", "/_matrix/client/v3/no/such/thing", "", nil, 404, "M_UNRECOGNIZED"},
		{"unknown API prefix", "GET", "/_matrix/nothing/v1/x", "", nil, 404, "M_UNRECOGNIZED"},
		{"unknown version prefix", "GET", "/_matrix/client/v9/account/whoami", "alice", nil, 404, "M_UNRECOGNIZED"},
		{"wrong method", "DELETE", "/_matrix/client/v3/login", "", nil, 405, "M_UNRECOGNIZED"},
		{"wrong method on param route", "POST", "/_matrix/client/v3/profile/@alice:localhost", "", "{}", 405, "M_UNRECOGNIZED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.Client(t)
			switch tc.token {
			case "":
			case "alice":
				c.Token = alice.Token
			default:
				c.Token = tc.token
			}
			r := c.Do(tc.method, tc.path, tc.body)
			if r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
			if r.Str("error") == "" {
				t.Errorf("error response without an error message: %s", r)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// None of it changed alice.
	alice.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	if r := alice.Must(200, "GET", "/_matrix/client/v3/profile/@alice:localhost", nil); r.Str("displayname") != "alice" {
		t.Errorf("profile changed by bad requests: %s", r)
	}
}

// Spec: "Web Browser Clients": every response carries the CORS headers,
// and pre-flight OPTIONS requests are answered without authentication.
func TestCORS(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	c := s.Client(t)
	for _, path := range []string{"/_matrix/client/versions", "/_matrix/client/v3/account/whoami", "/_matrix/client/v3/nope"} {
		for _, method := range []string{"GET", "OPTIONS"} {
			r := c.DoWith(method, path, nil, map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("%s %s: Access-Control-Allow-Origin %q", method, path, got)
			}
			for _, want := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
				if !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), want) {
					t.Errorf("%s %s: Allow-Methods %q lacks %s", method, path, r.Header.Get("Access-Control-Allow-Methods"), want)
				}
			}
			for _, want := range []string{"Authorization", "Content-Type", "X-Requested-With"} {
				if !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), want) {
					t.Errorf("%s %s: Allow-Headers lacks %s", method, path, want)
				}
			}
			if method == "OPTIONS" && r.Status != http.StatusNoContent {
				t.Errorf("OPTIONS %s: status %d", path, r.Status)
			}
		}
	}
}

// HEAD is answered by the GET route, as HTTP requires.
func TestHeadServedAsGet(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Do("HEAD", "/_matrix/client/versions", nil)
	if r.Status != 200 {
		t.Fatalf("HEAD /versions: %s", r)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
