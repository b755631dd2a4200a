package preview

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"hearth/server/httpx"
	"hearth/server/netguard"
)

// A redirect is fetched through the guard like the first URL: a public
// page that redirects into the private network gets no preview. The
// service here may reach 127.0.0.1 (standing for the public internet) but
// not 127.0.0.2 (standing for the private network); nothing else in the
// test environment can tell the two apart.
func TestRedirectToPrivateRefused(t *testing.T) {
	privateLn, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	private := &httptest.Server{Listener: privateLn, Config: &http.Server{Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<title>Router admin</title>")
		})}}
	private.Start()
	defer private.Close()
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page" {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<title>Public page</title>")
			return
		}
		http.Redirect(w, r, private.URL+"/", http.StatusFound)
	}))
	defer public.Close()

	s := New(Config{NoRateLimit: true, Log: slog.New(slog.DiscardHandler)})
	s.client = netguard.NewClientAllowing([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout, 0)
	base := serve(t, s)

	tests := []struct {
		name    string
		target  string
		status  int
		errcode string
		title   string
	}{
		{"public page", public.URL + "/page", 200, "", "Public page"},
		{"private page", private.URL + "/", 403, "M_FORBIDDEN", ""},
		{"redirect into the private network", public.URL + "/to-private", 403, "M_FORBIDDEN", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(tt.target), nil)
			req.Header.Set("Authorization", "Bearer token")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || body["errcode"] != nil && body["errcode"] != tt.errcode {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, body, tt.status, tt.errcode)
			}
			if tt.title != "" && body["og:title"] != tt.title {
				t.Errorf("og:title = %v, want %q", body["og:title"], tt.title)
			}
		})
	}
}

// serve serves s's routes over real HTTP, with every token accepted as
// one user's.
func serve(t *testing.T, s *Service) string {
	t.Helper()
	mux := &httpx.Mux{}
	mux.Handle("/_matrix/client", s.ClientRoutes())
	auth := func(token, ip string, allowExpired bool) (*httpx.Principal, error) {
		return &httpx.Principal{UserID: "@alice:localhost", Localpart: "alice", DeviceID: "D"}, nil
	}
	srv := httpx.NewServer(mux, auth, slog.New(slog.DiscardHandler), httpx.DefaultMaxBody)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) // ends at Shutdown below
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}
