package client_test

import (
	"testing"

	"hearth/server/servertest"
)

// Spec: "Refreshing access tokens": the old refresh token remains valid
// until the new access token or refresh token is used, so a client that
// lost a refresh response can repeat it; after that it is revoked.
func TestRefreshRetryWindow(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	s.Register(t, "rita", "pw")
	c := s.Client(t)
	r := c.Must(200, "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "rita"},
		"password": "pw", "refresh_token": true,
	})
	a1, r1 := r.Str("access_token"), r.Str("refresh_token")
	if r1 == "" || r.JSON["expires_in_ms"] == nil {
		t.Fatalf("login with refresh_token: %s", r)
	}
	refresh := func(tok string) *servertest.Response {
		return s.Client(t).Do("POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": tok})
	}
	use := func(access string) int {
		u := s.Client(t)
		u.Token = access
		return u.Do("GET", "/_matrix/client/v3/account/whoami", nil).Status
	}

	// The response to the first refresh is "lost": refresh again with r1.
	if r := refresh(r1); r.Status != 200 {
		t.Fatalf("first refresh: %s", r)
	}
	second := refresh(r1)
	if second.Status != 200 {
		t.Fatalf("repeated refresh with the old token: %s", second)
	}
	a3, r3 := second.Str("access_token"), second.Str("refresh_token")
	if use(a1) != 401 {
		t.Fatal("the access token from before the refresh still works")
	}
	// Using the new access token revokes r1.
	if use(a3) != 200 {
		t.Fatal("refreshed access token refused")
	}
	if r := refresh(r1); r.Status != 401 || r.Errcode() != "M_UNKNOWN_TOKEN" {
		t.Fatalf("old refresh token after the new pair was used: %s", r)
	}
	// Using the new refresh token also revokes the one before it.
	r4 := refresh(r3)
	if r4.Status != 200 {
		t.Fatalf("refresh with r3: %s", r4)
	}
	if r := refresh(r4.Str("refresh_token")); r.Status != 200 {
		t.Fatalf("refresh with r4: %s", r)
	}
	if r := refresh(r3); r.Status != 401 {
		t.Fatalf("r3 after r4 was used: %s", r)
	}
}
