package netguard_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"hearth/server/netguard"
)

func TestBlocked(t *testing.T) {
	tests := []struct {
		ip      string
		blocked bool
	}{
		// Public addresses pass, in every spelling.
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"2606:4700:4700::1111", false},
		{"2a00:1450:4001:82b::200e", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", false},  // 6to4 of 8.8.8.8
		{"100.63.255.255", false},   // just below CGNAT
		{"100.128.0.0", false},      // just above CGNAT
		{"172.15.255.255", false},   // just below 172.16/12
		{"172.32.0.0", false},       // just above it

		// IPv4 that is not the public internet.
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"100.64.0.1", true},      // CGNAT
		{"100.127.255.255", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"192.0.2.1", true},
		{"198.18.0.1", true},
		{"203.0.113.9", true},

		// IPv6.
		{"::1", true},
		{"::", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"ff02::1", true},
		{"ff05::2", true},
		{"2001:db8::1", true},
		{"fec0::1", true},

		// IPv4-mapped, -compatible, NAT64 and 6to4 forms of blocked IPv4.
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.64.0.1", true},
		{"::127.0.0.1", true},
		{"64:ff9b::7f00:1", true},  // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", true},   // NAT64 of 10.0.0.1
		{"64:ff9b:1::1", true},     // local-use NAT64
		{"2002:7f00:1::1", true},   // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", true}, // 6to4 of 192.168.1.1
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			ip, err := netip.ParseAddr(tt.ip)
			if err != nil {
				t.Fatal(err)
			}
			if got := netguard.Blocked(ip); got != tt.blocked {
				t.Errorf("Blocked(%s) = %v, want %v", tt.ip, got, tt.blocked)
			}
		})
	}
	if !netguard.Blocked(netip.Addr{}) {
		t.Error("the zero Addr must be blocked")
	}
}

// A server on 127.0.0.1 stands for any private service: the guard refuses
// it, allowPrivate reaches it.
func TestClientRefusesLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	}))
	defer srv.Close()
	localhostURL := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)

	for _, u := range []string{srv.URL, localhostURL} {
		_, err := netguard.NewClient(false, 5*time.Second, 0).Get(u)
		if !netguard.IsBlocked(err) {
			t.Errorf("guarded GET %s: want a blocked error, got %v", u, err)
		}
	}

	resp, err := netguard.NewClient(true, 5*time.Second, 0).Get(srv.URL)
	if err != nil {
		t.Fatalf("GET with allowPrivate: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "secret" {
		t.Errorf("body = %q", b)
	}
}

// serveOn starts a test server on addr ("127.0.0.2:0"), skipping the test
// where that loopback address does not exist (Linux routes all of 127/8).
func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// A redirect is a new connection and goes through the guard again. The
// client here may reach 127.0.0.1 (standing for a public server) but not
// 127.0.0.2 (standing for a private one).
func TestRedirects(t *testing.T) {
	private := serveOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	}))
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "public")
	}))
	defer public.Close()
	hops := 0
	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops++
		http.Redirect(w, r, loop.URL+"/again", http.StatusFound)
	}))
	defer loop.Close()
	redirectTo := func(target string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target, http.StatusFound)
		}))
		t.Cleanup(srv.Close)
		return srv
	}

	c := netguard.NewClientAllowing([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 5*time.Second, 0)
	if _, err := c.Get(private.URL); !netguard.IsBlocked(err) {
		t.Fatalf("GET of the private server: want blocked, got %v", err)
	}
	resp, err := c.Get(redirectTo(public.URL).URL)
	if err != nil {
		t.Fatalf("redirect to a public server: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "public" {
		t.Errorf("after a redirect: body %q", b)
	}
	if _, err := c.Get(redirectTo(private.URL).URL); !netguard.IsBlocked(err) {
		t.Errorf("redirect to the private server: want blocked, got %v", err)
	}

	if _, err := c.Get(loop.URL); err == nil {
		t.Error("a redirect loop must fail")
	}
	if hops != netguard.MaxRedirects+1 {
		t.Errorf("followed %d hops, want %d", hops, netguard.MaxRedirects+1)
	}
	if _, err := c.Get(redirectTo("file:///etc/passwd").URL); err == nil {
		t.Error("a redirect to file:// must fail")
	}
}

func TestBodyLimit(t *testing.T) {
	body := strings.Repeat("x", 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()

	tests := []struct {
		name    string
		max     int64
		query   string
		wantErr error
	}{
		{"within", 1000, "", nil},
		{"within, chunked", 1000, "?chunked", nil},
		{"Content-Length over", 999, "", netguard.ErrTooLarge},
		{"chunked over", 999, "?chunked", netguard.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := netguard.NewClient(true, 5*time.Second, tt.max).Get(srv.URL + tt.query)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	if _, err := netguard.NewClient(true, 200*time.Millisecond, 0).Get(srv.URL); err == nil {
		t.Fatal("a server that never answers must time out")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed out after %v", d)
	}
}
