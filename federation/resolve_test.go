package federation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/federation"
)

// certifiedNames are the names (and addresses) the test server's
// certificate is valid for.
var certifiedNames = []string{
	"port.example", "delegated.example", "wk-srv.example", "wk-old.example", "wk-plain.example",
	"wk-invalid.example", "wk-port.example", "wk-ip.example", "badjson.example", "srv.example",
	"oldsrv.example", "plain.example", "redirect.example", "cache.example", "cache-fail.example",
	"concurrent.example", "127.0.0.1", "::1",
}

// wellKnowns are the .well-known/matrix/server answers, by Host; any
// other host answers 404.
var wellKnowns = map[string]func(w http.ResponseWriter){
	"wk-port.example":  jsonBody(`{"m.server": "delegated.example:8450"}`),
	"wk-ip.example":    jsonBody(`{"m.server": "[::1]:8451"}`),
	"wk-srv.example":   jsonBody(`{"m.server": "delegated-srv.example"}`),
	"wk-old.example":   jsonBody(`{"m.server": "delegated-old.example"}`),
	"wk-plain.example": jsonBody(`{"m.server": "delegated.example"}`),
	// A path smuggled into m.server makes the answer invalid.
	"wk-invalid.example": jsonBody(`{"m.server": "delegated.example/evil"}`),
	"badjson.example":    jsonBody(`{"m.server": "delegated.example"`),
	"redirect.example": func(w http.ResponseWriter) {
		w.Header().Set("Location", "https://wk-port.example/.well-known/matrix/server")
		w.WriteHeader(http.StatusFound)
	},
	"cache.example":      jsonBody(`{"m.server": "delegated.example:8450"}`),
	"concurrent.example": jsonBody(`{"m.server": "delegated.example:8450"}`),
	"cache-fail.example": func(w http.ResponseWriter) { http.Error(w, "down", http.StatusInternalServerError) },
}

func jsonBody(body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
}

// srvRecords are the SRV records there are, by query name.
var srvRecords = map[string][]*net.SRV{
	"_matrix-fed._tcp.delegated-srv.example": {{Target: "fed-target.example.", Port: 8452}},
	"_matrix._tcp.delegated-old.example":     {{Target: "old-target.example.", Port: 8453}},
	"_matrix-fed._tcp.badjson.example":       {{Target: "fed-target.example.", Port: 8454}},
	"_matrix-fed._tcp.srv.example":           {{Target: "fed-target.example.", Port: 8455}},
	"_matrix._tcp.srv.example":               {{Target: "wrong.example.", Port: 1}},
	"_matrix._tcp.oldsrv.example":            {{Target: "old-target.example.", Port: 8456}},
	"_matrix-fed._tcp.uncertified.example":   {{Target: "fed-target.example.", Port: 8455}},
}

func lookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	q := "_" + service + "._" + proto + "." + name
	if addrs, ok := srvRecords[q]; ok {
		return q, addrs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: q, IsNotFound: true}
}

// reachable are the addresses that lead to the test server, with port 443
// of the wellKnowns hosts; anything else does not resolve.
var reachable = []string{
	"127.0.0.1:8448", "[::1]:8448", "[::1]:8451", "port.example:8449", "delegated.example:8450",
	"delegated.example:8448", "fed-target.example:8452", "old-target.example:8453",
	"fed-target.example:8454", "fed-target.example:8455", "old-target.example:8456",
	"plain.example:8448", "wk-invalid.example:8448",
}

// fedServer is a TLS server for every certified name that answers
// .well-known per wellKnowns and any other path with the Host header and
// TLS server name it got.
type fedServer struct {
	*httptest.Server
	roots *x509.CertPool

	mu      sync.Mutex // guards fetches
	fetches map[string]int
}

func (s *fedServer) wellKnownFetches(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[host]
}

func startFedServer(t *testing.T) *fedServer {
	t.Helper()
	s := &fedServer{fetches: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/matrix/server" {
			s.mu.Lock()
			s.fetches[r.Host]++
			s.mu.Unlock()
			if answer, ok := wellKnowns[r.Host]; ok {
				answer(w)
				return
			}
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"host": r.Host, "sni": r.TLS.ServerName})
	}))
	cert, roots := mintCertificate(t, certifiedNames)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	s.StartTLS()
	t.Cleanup(s.Close)
	s.roots = roots
	return s
}

// client returns a federation client trusting the server's CA, with DNS
// answered by srvRecords and the reachable addresses dialling the server.
func (s *fedServer) client() *federation.Client {
	return s.clientWith(lookupSRV)
}

// clientWith is client with DNS answered by lookup.
func (s *fedServer) clientWith(lookup federation.LookupSRVFunc) *federation.Client {
	addr := s.Listener.Addr().String()
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		for _, r := range reachable {
			if r == a {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
		}
		host, port, _ := net.SplitHostPort(a)
		if _, ok := wellKnowns[host]; ok && port == "443" {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	return federation.NewClient(federation.ClientConfig{
		ServerName: "me.example", RootCAs: s.roots, AllowPrivate: true,
		LookupSRV: lookup, DialContext: dial,
	})
}

// mintCertificate returns a certificate for names, signed by a fresh CA,
// and a pool of that CA alone.
func mintCertificate(t *testing.T, names []string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "resolve test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestResolveServerNames(t *testing.T) {
	s := startFedServer(t)
	c := s.client()
	cases := []struct {
		name, server string
		want         federation.Resolution
		sni          string // what the server sees: no SNI for an IP address
	}{
		{name: "IP literal", server: "127.0.0.1",
			want: federation.Resolution{Addr: "127.0.0.1:8448", Host: "127.0.0.1", ServerName: "127.0.0.1"}},
		{name: "IPv6 literal", server: "[::1]",
			want: federation.Resolution{Addr: "[::1]:8448", Host: "[::1]", ServerName: "::1"}},
		{name: "IPv6 literal with port", server: "[::1]:8451",
			want: federation.Resolution{Addr: "[::1]:8451", Host: "[::1]:8451", ServerName: "::1"}},
		{name: "explicit port", server: "port.example:8449",
			want: federation.Resolution{Addr: "port.example:8449", Host: "port.example:8449", ServerName: "port.example"}, sni: "port.example"},
		{name: "well-known to name with port", server: "wk-port.example",
			want: federation.Resolution{Addr: "delegated.example:8450", Host: "delegated.example:8450", ServerName: "delegated.example"}, sni: "delegated.example"},
		{name: "well-known to IP literal", server: "wk-ip.example",
			want: federation.Resolution{Addr: "[::1]:8451", Host: "[::1]:8451", ServerName: "::1"}},
		{name: "well-known redirected", server: "redirect.example",
			want: federation.Resolution{Addr: "delegated.example:8450", Host: "delegated.example:8450", ServerName: "delegated.example"}, sni: "delegated.example"},
		{name: "well-known, then delegate's SRV", server: "wk-srv.example",
			want: federation.Resolution{Addr: "fed-target.example:8452", Host: "delegated-srv.example", ServerName: "delegated-srv.example"}},
		{name: "well-known, then delegate's deprecated SRV", server: "wk-old.example",
			want: federation.Resolution{Addr: "old-target.example:8453", Host: "delegated-old.example", ServerName: "delegated-old.example"}},
		{name: "well-known without port nor SRV", server: "wk-plain.example",
			want: federation.Resolution{Addr: "delegated.example:8448", Host: "delegated.example", ServerName: "delegated.example"}, sni: "delegated.example"},
		{name: "invalid m.server ignored", server: "wk-invalid.example",
			want: federation.Resolution{Addr: "wk-invalid.example:8448", Host: "wk-invalid.example", ServerName: "wk-invalid.example"}, sni: "wk-invalid.example"},
		{name: "invalid well-known JSON, then SRV", server: "badjson.example",
			want: federation.Resolution{Addr: "fed-target.example:8454", Host: "badjson.example", ServerName: "badjson.example"}, sni: "badjson.example"},
		{name: "no well-known, SRV preferred to deprecated SRV", server: "srv.example",
			want: federation.Resolution{Addr: "fed-target.example:8455", Host: "srv.example", ServerName: "srv.example"}, sni: "srv.example"},
		{name: "no well-known, deprecated SRV only", server: "oldsrv.example",
			want: federation.Resolution{Addr: "old-target.example:8456", Host: "oldsrv.example", ServerName: "oldsrv.example"}, sni: "oldsrv.example"},
		{name: "nothing: port 8448", server: "plain.example",
			want: federation.Resolution{Addr: "plain.example:8448", Host: "plain.example", ServerName: "plain.example"}, sni: "plain.example"},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Resolve(ctx, tc.server)
			if err != nil || got != tc.want {
				t.Fatalf("Resolve(%q) = %+v, %v; want %+v", tc.server, got, err, tc.want)
			}
			// The delegated names in these cases are not certified: the
			// request must fail on the certificate, not go through.
			if !certified(tc.want.ServerName) {
				err := c.Call(ctx, "GET", tc.server, "/_matrix/federation/v1/version", nil, nil)
				var hostErr x509.HostnameError
				if !errors.As(err, &hostErr) {
					t.Fatalf("request to %s: want a certificate name error, got %v", tc.server, err)
				}
				return
			}
			var seen struct{ Host, SNI string }
			if err := c.Call(ctx, "GET", tc.server, "/_matrix/federation/v1/version", nil, &seen); err != nil {
				t.Fatalf("request to %s: %v", tc.server, err)
			}
			if seen.Host != tc.want.Host || seen.SNI != tc.sni {
				t.Fatalf("server saw Host %q, TLS server name %q; want %q, %q", seen.Host, seen.SNI, tc.want.Host, tc.sni)
			}
		})
	}
}

func certified(name string) bool {
	for _, n := range certifiedNames {
		if n == name {
			return true
		}
	}
	return false
}

func TestResolveCertificateForOriginalName(t *testing.T) {
	// SRV points at a certified target, but the certificate must be
	// valid for the name resolved, which it is not.
	s := startFedServer(t)
	err := s.client().Call(context.Background(), "GET", "uncertified.example", "/_matrix/federation/v1/version", nil, nil)
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) || !strings.Contains(err.Error(), "uncertified.example") {
		t.Fatalf("want a certificate name error for uncertified.example, got %v", err)
	}
}

func TestWellKnownCached(t *testing.T) {
	s := startFedServer(t)
	c := s.client()
	ctx := context.Background()
	for _, host := range []string{"cache.example", "cache-fail.example"} {
		first, err := c.Resolve(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Resolve(ctx, host)
		if err != nil || second != first {
			t.Fatalf("%s: second resolution %+v, %v; first %+v", host, second, err, first)
		}
		if n := s.wellKnownFetches(host); n != 1 {
			t.Errorf("%s: .well-known fetched %d times, want once", host, n)
		}
	}
	if r, _ := c.Resolve(ctx, "cache-fail.example"); r.Addr != "cache-fail.example:8448" {
		t.Errorf("failed .well-known: resolved to %s, want port 8448", r.Addr)
	}

	// Concurrent resolutions of a name share one fetch.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if r, err := c.Resolve(ctx, "concurrent.example"); err != nil || r.Addr != "delegated.example:8450" {
				t.Errorf("concurrent resolution: %+v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if n := s.wellKnownFetches("concurrent.example"); n != 1 {
		t.Errorf("concurrent.example: .well-known fetched %d times, want once", n)
	}
}

func TestResolveInvalidServerNames(t *testing.T) {
	c := federation.NewClient(federation.ClientConfig{ServerName: "me.example"})
	for _, name := range []string{"", "example.com:0", "example.com:65536", "example.com:", "::1", "[::1", "[fe80::1%eth0]",
		"a:1:2", "exa mple.com", "example.com/path", "user@example.com", "[127.0.0.1]"} {
		if r, err := c.Resolve(context.Background(), name); err == nil {
			t.Errorf("Resolve(%q) = %+v, want an error", name, r)
		}
	}
}

// SRV answers are cached, found or not: each new connection resolves its
// server's name, and a DNS server that cannot answer an SRV query costs
// the resolver's whole timeout every time (Docker's did, 5 s per
// connection).
func TestSRVCached(t *testing.T) {
	s := startFedServer(t)
	var mu sync.Mutex
	lookups := map[string]int{}
	c := s.clientWith(func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
		mu.Lock()
		lookups[name]++
		mu.Unlock()
		return lookupSRV(ctx, service, proto, name)
	})
	for _, host := range []string{"srv.example", "plain.example"} {
		first, err := c.Resolve(context.Background(), host)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if again, err := c.Resolve(context.Background(), host); err != nil || again != first {
				t.Fatalf("%s: resolved again to %+v, %v; first %+v", host, again, err, first)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// srv.example's first service answers; plain.example has neither.
	if lookups["srv.example"] != 1 || lookups["plain.example"] != 2 {
		t.Fatalf("SRV lookups by name: %v; want 1 for srv.example and 2 for plain.example", lookups)
	}
}
