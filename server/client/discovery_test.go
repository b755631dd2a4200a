package client_test

import (
	"slices"
	"testing"

	"hearth/server/servertest"
)

// Spec: "GET /_matrix/client/versions", public, and "Capabilities
// negotiation", behind auth.
func TestVersionsAndCapabilities(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	r := s.Client(t).Must(200, "GET", "/_matrix/client/versions", nil)
	var versions []string
	for _, v := range r.JSON["versions"].([]any) {
		versions = append(versions, v.(string))
	}
	for _, want := range []string{"r0.6.1", "v1.1", "v1.10", "v1.11"} {
		if !slices.Contains(versions, want) {
			t.Errorf("versions lack %s: %v", want, versions)
		}
	}
	if _, ok := r.JSON["unstable_features"].(map[string]any); !ok {
		t.Errorf("unstable_features is not an object: %s", r)
	}

	if r := s.Client(t).Do("GET", "/_matrix/client/v3/capabilities", nil); r.Status != 401 {
		t.Fatalf("capabilities without token: %s", r)
	}
	c := s.Register(t, "alice", "pw")
	r = c.Must(200, "GET", "/_matrix/client/v3/capabilities", nil)
	caps := r.JSON["capabilities"].(map[string]any)
	for name, want := range map[string]bool{"m.change_password": true, "m.set_displayname": true, "m.set_avatar_url": true, "m.3pid_changes": false} {
		got, _ := caps[name].(map[string]any)
		if got == nil || got["enabled"] != want {
			t.Errorf("capability %s = %v, want enabled %v", name, caps[name], want)
		}
	}
}

// Spec: "Well-known URIs": served from the configured public URL, 404
// when there is none.
func TestWellKnownClient(t *testing.T) {
	s := servertest.Start(t, servertest.Options{PublicURL: "https://matrix.example.org"})
	r := s.Client(t).Must(200, "GET", "/.well-known/matrix/client", nil)
	hs, _ := r.JSON["m.homeserver"].(map[string]any)
	if hs["base_url"] != "https://matrix.example.org" {
		t.Fatalf("well-known: %s", r)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("well-known without CORS")
	}
	bare := servertest.Start(t, servertest.Options{})
	if r := bare.Client(t).Do("GET", "/.well-known/matrix/client", nil); r.Status != 404 {
		t.Fatalf("well-known without public URL: %s", r)
	}
}
