package federation_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server/pdu"
	"hearth/server/servertest"
	"hearth/store"
)

func getJSON(t *testing.T, c *http.Client, u string, out any) []byte {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return raw
}

type keyResp struct {
	ServerName   string `json:"server_name"`
	ValidUntilTS int64  `json:"valid_until_ts"`
	VerifyKeys   map[string]struct {
		Key string `json:"key"`
	} `json:"verify_keys"`
	OldVerifyKeys map[string]any               `json:"old_verify_keys"`
	Signatures    map[string]map[string]string `json:"signatures"`
}

// signingKey reads a server's public signing key from its store.
func signingKey(t *testing.T, s *servertest.Server) (id, pub string) {
	t.Helper()
	err := s.Store().View(func(tx *store.Tx) error {
		k, err := tx.SigningKey()
		if err != nil {
			return err
		}
		id = k.ID
		pub = base64.RawStdEncoding.EncodeToString(ed25519Public(k.Seed))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, pub
}

func TestKeyServerOverHTTPS(t *testing.T) {
	ca := servertest.NewCA(t)
	a := ca.Start(t, servertest.Options{})
	c := ca.HTTPClient(t)
	name := strings.TrimPrefix(a.FederationURL, "https://")

	var k keyResp
	raw := getJSON(t, c, a.FederationURL+"/_matrix/key/v2/server", &k)
	id, pub := signingKey(t, a)
	if k.ServerName != name || len(k.VerifyKeys) != 1 || k.VerifyKeys[id].Key != pub || k.OldVerifyKeys == nil {
		t.Fatalf("key response: %s; want server %s, key %s %s", raw, name, id, pub)
	}
	if err := pdu.VerifyJSONSignature(raw, name, id, pub); err != nil {
		t.Fatalf("key response does not verify with the server's key: %v", err)
	}
	week := time.Now().Add(7 * 24 * time.Hour).UnixMilli()
	if k.ValidUntilTS < week-60_000 || k.ValidUntilTS > week+60_000 {
		t.Errorf("valid_until_ts %d, want about a week from now (%d)", k.ValidUntilTS, week)
	}

	var v struct {
		Server struct{ Name, Version string } `json:"server"`
	}
	getJSON(t, c, a.FederationURL+"/_matrix/federation/v1/version", &v)
	if v.Server.Name != "Hearth" {
		t.Errorf("version: %+v", v)
	}
	// The HTTPS listener serves the client API too.
	var versions map[string]any
	getJSON(t, c, a.FederationURL+"/_matrix/client/versions", &versions)
	if versions["versions"] == nil {
		t.Errorf("client API over HTTPS: %v", versions)
	}
}

func TestSignedRequests(t *testing.T) {
	ca := servertest.NewCA(t)
	a := ca.Start(t, servertest.Options{})
	b := ca.Start(t, servertest.Options{})
	bName := strings.TrimPrefix(b.FederationURL, "https://")
	bob := b.Register(t, "bob", "password-bob")
	bob.Must(200, "PUT", "/_matrix/client/v3/profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob"})
	fed := a.Federation().Client()
	ctx := context.Background()
	profile := func(userID string) string {
		return "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape(userID)
	}

	cases := []struct {
		name     string
		uri      string
		tamper   func(req *http.Request)
		dest     string // signed for; "" for B
		want     int
		wantName string
	}{
		{name: "signed", uri: profile(bob.UserID), want: 200, wantName: "Bob"},
		{name: "one field", uri: profile(bob.UserID) + "&field=displayname", want: 200, wantName: "Bob"},
		{name: "unknown user", uri: profile("@nobody:" + bName), want: 404},
		{name: "no destination in header", uri: profile(bob.UserID), want: 200, wantName: "Bob",
			tamper: func(req *http.Request) {
				h := req.Header.Get("Authorization")
				i := strings.Index(h, `destination="`)
				j := strings.Index(h[i:], `",`)
				req.Header.Set("Authorization", h[:i]+h[i+j+2:])
			}},
		{name: "forged signature", uri: profile(bob.UserID), want: 401,
			tamper: func(req *http.Request) {
				h := req.Header.Get("Authorization")
				i := strings.Index(h, `sig="`) + len(`sig="`)
				flip := "A"
				if h[i] == 'A' {
					flip = "B"
				}
				req.Header.Set("Authorization", h[:i]+flip+h[i+1:])
			}},
		{name: "signed for another uri", uri: profile(bob.UserID), want: 401,
			tamper: func(req *http.Request) { req.URL.RawQuery += "&field=avatar_url" }},
		{name: "another destination", uri: profile(bob.UserID), dest: "other.example", want: 401},
		{name: "no authorization", uri: profile(bob.UserID), want: 401,
			tamper: func(req *http.Request) { req.Header.Del("Authorization") }},
		{name: "bearer token instead", uri: profile(bob.UserID), want: 401,
			tamper: func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+bob.Token) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := bName
			if tc.dest != "" {
				dest = tc.dest
			}
			req, err := fed.NewRequest(ctx, "GET", dest, tc.uri, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Whatever it was signed for, the request goes to B.
			req.URL.Host, req.Host = bName, bName
			if tc.tamper != nil {
				tc.tamper(req)
			}
			var out struct {
				DisplayName string `json:"displayname"`
			}
			err = fed.Do(req, &out)
			var fe *federation.Error
			switch {
			case tc.want == 200 && err != nil:
				t.Fatalf("want 200, got %v", err)
			case tc.want == 200 && out.DisplayName != tc.wantName:
				t.Fatalf("displayname %q, want %q", out.DisplayName, tc.wantName)
			case tc.want != 200 && !errors.As(err, &fe):
				t.Fatalf("want %d, got %v", tc.want, err)
			case tc.want != 200 && fe.Status != tc.want:
				t.Fatalf("want %d, got %v", tc.want, err)
			case tc.want == 401 && fe.Code != "M_UNAUTHORIZED":
				t.Fatalf("want M_UNAUTHORIZED, got %v", err)
			case tc.want == 404 && fe.Code != "M_NOT_FOUND":
				t.Fatalf("want M_NOT_FOUND, got %v", err)
			}
		})
	}

	// The notary answers for B with B's own response, countersigned by A.
	c := ca.HTTPClient(t)
	aName := strings.TrimPrefix(a.FederationURL, "https://")
	var q struct {
		ServerKeys []keyResp `json:"server_keys"`
	}
	getJSON(t, c, a.FederationURL+"/_matrix/key/v2/query/"+url.PathEscape(bName), &q)
	bID, bPub := signingKey(t, b)
	if len(q.ServerKeys) != 1 || q.ServerKeys[0].VerifyKeys[bID].Key != bPub ||
		q.ServerKeys[0].Signatures[bName] == nil || q.ServerKeys[0].Signatures[aName] == nil {
		t.Errorf("notary answer for %s: %+v", bName, q)
	}
}

func TestUntrustedCertificateRefused(t *testing.T) {
	ca := servertest.NewCA(t)
	a := ca.Start(t, servertest.Options{})
	// A server whose certificate is not from the trusted CA.
	rogue := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"server":{"name":"rogue"}}`))
	}))
	defer rogue.Close()
	dest := strings.TrimPrefix(rogue.URL, "https://")
	err := a.Federation().Client().Call(context.Background(), "GET", dest, "/_matrix/federation/v1/version", nil, nil)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("request to an untrusted certificate: want an unknown-authority error, got %v", err)
	}
}
