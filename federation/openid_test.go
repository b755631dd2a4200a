package federation_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"hearth/server/servertest"
)

// TestOpenIDRoundTrip: a user of A gets an OpenID token, and a third
// party learns whose it is from A's federation API, with no signature;
// the token opens nothing else.
func TestOpenIDRoundTrip(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a := srv[0]
	alice := a.Register(t, "alice", "password-alice")
	bob := a.Register(t, "bob", "password-bob")
	path := "/_matrix/client/v3/user/" + url.PathEscape(alice.UserID) + "/openid/request_token"

	r := alice.Must(200, "POST", path, map[string]any{})
	token := r.Str("access_token")
	if token == "" || r.Str("token_type") != "Bearer" || r.Str("matrix_server_name") != a.ServerName() || r.JSON["expires_in"] != float64(3600) {
		t.Fatalf("request_token: %s", r)
	}
	wantMatrixErr(t, "token for another user", bob.Do("POST", path, map[string]any{}), 403, "M_FORBIDDEN")
	wantMatrixErr(t, "anonymous", a.Client(t).Do("POST", path, map[string]any{}), 401, "M_MISSING_TOKEN")

	userinfo := func(tok string) (int, map[string]any) {
		t.Helper()
		// Over HTTPS to the federation listener, as a third party would.
		c := &http.Client{Transport: a.Federation().Client().HTTPClient().Transport}
		resp, err := c.Get(a.FederationURL + "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(tok))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
	if st, m := userinfo(token); st != 200 || m["sub"] != alice.UserID {
		t.Fatalf("userinfo: %d %v", st, m)
	}
	for name, tok := range map[string]string{"bad token": "oid_nonsense", "empty": "", "an access token": alice.Token} {
		if st, m := userinfo(tok); st != 401 || m["errcode"] != "M_UNKNOWN_TOKEN" {
			t.Errorf("userinfo with %s: %d %v, want 401 M_UNKNOWN_TOKEN", name, st, m)
		}
	}
	// The OpenID token is no access token.
	as := a.Client(t)
	as.Token = token
	wantMatrixErr(t, "OpenID token as an access token", as.Do("GET", "/_matrix/client/v3/account/whoami", nil), 401, "M_UNKNOWN_TOKEN")
}

// TestWellKnownServer: /.well-known/matrix/server names the delegation
// target when one is configured, and is 404 otherwise.
func TestWellKnownServer(t *testing.T) {
	on := servertest.Start(t, servertest.Options{WellKnownServer: "matrix.example.org:443"})
	r := on.Client(t).Must(200, "GET", "/.well-known/matrix/server", nil)
	if r.Str("m.server") != "matrix.example.org:443" || len(r.JSON) != 1 {
		t.Fatalf("well-known with delegation: %s", r)
	}
	off := servertest.Start(t, servertest.Options{})
	wantMatrixErr(t, "well-known without delegation", off.Client(t).Do("GET", "/.well-known/matrix/server", nil), 404, "M_NOT_FOUND")
}
