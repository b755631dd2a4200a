package admin_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"testing"

	"hearth/server/servertest"
)

func mac(secret, nonce, user, password string, admin bool) string {
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00" + role))
	return hex.EncodeToString(m.Sum(nil))
}

// Synapse's shared-secret registration, as register_new_matrix_user and
// Complement use it: a nonce, then an HMAC-SHA1 over the request.
func TestSharedSecretRegister(t *testing.T) {
	s := servertest.Start(t, servertest.Options{SharedSecret: "s3cret", ClosedRegistration: true})
	c := s.Client(t)
	const path = "/_synapse/admin/v1/register"

	nonce := c.Must(200, "GET", path, nil).Str("nonce")
	r := c.Must(200, "POST", path, map[string]any{
		"nonce": nonce, "username": "root", "password": "pw", "admin": true, "displayname": "The Admin",
		"mac": mac("s3cret", nonce, "root", "pw", true),
	})
	if r.Str("user_id") != "@root:localhost" || r.Str("access_token") == "" || r.Str("device_id") == "" {
		t.Fatalf("register: %s", r)
	}
	root := s.Client(t)
	root.Token = r.Str("access_token")
	root.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	if r := c.Must(200, "GET", "/_matrix/client/v3/profile/@root:localhost", nil); r.Str("displayname") != "The Admin" {
		t.Fatalf("displayname: %s", r)
	}
	// An admin may set another user's profile; that is how we see the flag.
	bob := s.Client(t)
	nonce = c.Must(200, "GET", path, nil).Str("nonce")
	r = c.Must(200, "POST", path, map[string]any{"nonce": nonce, "username": "bob", "password": "pw", "admin": false, "mac": mac("s3cret", nonce, "bob", "pw", false)})
	bob.Token = r.Str("access_token")
	root.Must(200, "PUT", "/_matrix/client/v3/profile/@bob:localhost/displayname", map[string]any{"displayname": "Bob"})
	if r := bob.Do("PUT", "/_matrix/client/v3/profile/@root:localhost/displayname", map[string]any{"displayname": "x"}); r.Status != 403 {
		t.Fatalf("non-admin bob changed root's profile: %s", r)
	}

	for _, tc := range []struct {
		name    string
		body    func(nonce string) map[string]any
		errcode string
		status  int
	}{
		{"wrong secret", func(n string) map[string]any {
			return map[string]any{"nonce": n, "username": "x1", "password": "pw", "mac": mac("guess", n, "x1", "pw", false)}
		}, "M_FORBIDDEN", 403},
		{"admin flag flipped after signing", func(n string) map[string]any {
			return map[string]any{"nonce": n, "username": "x2", "password": "pw", "admin": true, "mac": mac("s3cret", n, "x2", "pw", false)}
		}, "M_FORBIDDEN", 403},
		{"unknown nonce", func(n string) map[string]any {
			return map[string]any{"nonce": "abc", "username": "x3", "password": "pw", "mac": mac("s3cret", "abc", "x3", "pw", false)}
		}, "M_UNKNOWN", 400},
		{"taken name", func(n string) map[string]any {
			return map[string]any{"nonce": n, "username": "bob", "password": "pw", "mac": mac("s3cret", n, "bob", "pw", false)}
		}, "M_USER_IN_USE", 400},
		{"mac not hex", func(n string) map[string]any {
			return map[string]any{"nonce": n, "username": "x4", "password": "pw", "mac": "zz"}
		}, "M_FORBIDDEN", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.Must(200, "GET", path, nil).Str("nonce")
			r := c.Do("POST", path, tc.body(n))
			if r.Status != tc.status || r.Errcode() != tc.errcode {
				t.Fatalf("want %d %s, got %s", tc.status, tc.errcode, r)
			}
		})
	}

	// A nonce is good for one registration only.
	n := c.Must(200, "GET", path, nil).Str("nonce")
	c.Must(200, "POST", path, map[string]any{"nonce": n, "username": "once", "password": "pw", "mac": mac("s3cret", n, "once", "pw", false)})
	if r := c.Do("POST", path, map[string]any{"nonce": n, "username": "twice", "password": "pw", "mac": mac("s3cret", n, "twice", "pw", false)}); r.Status != 400 {
		t.Fatalf("reused nonce: %s", r)
	}
}

// Without a configured secret the API refuses, and says why.
func TestSharedSecretRegisterDisabled(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	if r := s.Client(t).Do("GET", "/_synapse/admin/v1/register", nil); r.Status != 400 || r.Errcode() != "M_UNKNOWN" {
		t.Fatalf("nonce without secret: %s", r)
	}
}
