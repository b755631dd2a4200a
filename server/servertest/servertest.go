// Package servertest starts real Hearth servers for tests: a real bbolt
// file in a temporary directory, a real listener on loopback, real HTTP.
// At cleanup the server is shut down and its store checked for
// consistency; a problem fails the test.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth/server"
	"hearth/server/accounts"
	"hearth/server/pdu"
	"hearth/store"
)

// Options configure a test server. The zero value is an open-registration
// server named "localhost" with rate limits off and cheap password hashing.
type Options struct {
	ClosedRegistration  bool
	SharedSecret        string
	RateLimit           bool
	AccessTokenLifetime time.Duration
	PublicURL           string
	RealArgon2          bool   // use the production argon2id parameters
	DataDir             string // reuse a data directory; "" for a new temporary one
	ServerName          string // default "localhost"
	NoPresence          bool
	LegacyMedia         bool  // serve local media on the unauthenticated endpoints
	MaxUploadSize       int64 // 0 for the default
	MediaQuota          int64 // per user, 0 for none
	// SSRFGuard refuses outbound requests to private and loopback
	// addresses, as production does; off, tests can serve pages to the
	// server from 127.0.0.1.
	SSRFGuard bool
	// Federation opens an HTTPS listener on a loopback port with the
	// certificate in TLSCertFile and TLSKeyFile, and names the server
	// "localhost:<port>" (unless ServerName is set); TrustCAFile is the
	// CA trusted for outbound federation.
	Federation  bool
	TLSCertFile string
	TLSKeyFile  string
	TrustCAFile string
	// WellKnownServer is announced in /.well-known/matrix/server.
	WellKnownServer string
	// DeviceNamesOverFederation shows other servers device names.
	DeviceNamesOverFederation bool
}

// Server is a running test server.
type Server struct {
	*server.Server
	URL     string // http://127.0.0.1:port
	DataDir string
	opts    Options
	closed  bool

	FederationURL string   // https://localhost:port with Options.Federation
	fedAddr       string   // the HTTPS listener's address, kept across restarts
	cut           sync.Map // federation ports this server cannot reach (Partition)
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s := &Server{DataDir: opts.DataDir, opts: opts}
	if opts.Federation {
		// The server name must carry the listener's port, so the port is
		// chosen before the server opens.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("federation listener: %v", err)
		}
		s.fedAddr = ln.Addr().String()
		ln.Close()
		if opts.ServerName == "" {
			_, port, _ := net.SplitHostPort(s.fedAddr)
			opts.ServerName = "localhost:" + port
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	s.opts = opts
	s.start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	argon := accounts.CheapArgon2
	if s.opts.RealArgon2 {
		argon = accounts.DefaultArgon2
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if s.opts.Federation {
		dial = s.dial
	}
	srv, err := server.Open(server.Config{
		DataDir: s.opts.DataDir, ServerName: s.opts.ServerName, HTTPAddr: "127.0.0.1:0",
		PublicURL: s.opts.PublicURL, OpenRegistration: !s.opts.ClosedRegistration,
		RegistrationSharedSecret: s.opts.SharedSecret, NoRateLimit: !s.opts.RateLimit,
		Argon2: argon, AccessTokenLifetime: s.opts.AccessTokenLifetime, Log: testLogger(), NoPresence: s.opts.NoPresence,
		LegacyMedia: s.opts.LegacyMedia, MaxUploadSize: s.opts.MaxUploadSize, MediaQuota: s.opts.MediaQuota,
		AllowPrivateAddresses: !s.opts.SSRFGuard,
		FederationAddr:        s.fedAddr, TLSCertFile: s.opts.TLSCertFile, TLSKeyFile: s.opts.TLSKeyFile,
		TrustCAFile: s.opts.TrustCAFile, FederationDial: dial, WellKnownServer: s.opts.WellKnownServer,
		DeviceNamesOverFederation: s.opts.DeviceNamesOverFederation,
	})
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	s.Server, s.URL, s.closed = srv, "http://"+srv.Addr(), false
	if s.fedAddr != "" {
		_, port, _ := net.SplitHostPort(s.fedAddr)
		s.FederationURL = "https://localhost:" + port
	}
}

// Stop shuts the server down and checks its store. It is safe to call twice.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.closed {
		return
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	CheckStore(t, s.DataDir)
}

// Restart stops the server and starts it again on the same data directory
// (on a new port).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.start(t)
}

// Resume starts a server Stop stopped, on the same data directory and
// federation port (the client API on a new port: clients need its URL).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	if !s.closed {
		t.Fatal("servertest: Resume of a running server")
	}
	s.start(t)
}

// CheckStore opens the store in dir and fails the test if it is not
// consistent.
func CheckStore(t testing.TB, dir string) {
	t.Helper()
	st, err := store.Open(dir, 5*time.Second)
	if err != nil {
		t.Errorf("reopen store: %v", err)
		return
	}
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
	if err := checkKeptEventIDs(st); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
	st.Close()
}

// checkKeptEventIDs checks that every event ID an event record keeps is
// the ID its JSON hashes to: the server reads the kept one instead.
func checkKeptEventIDs(st *store.Store) error {
	return st.View(func(tx *store.Tx) error {
		versions := map[uint64]string{}
		for pos := uint64(1); pos <= tx.LatestPos(); pos++ {
			rec, err := tx.Event(pos)
			if errors.Is(err, store.ErrNotFound) {
				continue // a position of something else than an event
			}
			if err != nil {
				return err
			}
			if rec.ID == "" {
				continue // an ID not kept
			}
			v, ok := versions[rec.RoomNID]
			if !ok {
				room, err := tx.RoomByNID(rec.RoomNID)
				if err != nil {
					return err
				}
				v, versions[rec.RoomNID] = room.Version, room.Version
			}
			ev, err := pdu.Parse(v, rec.JSON, rec.Flags&store.FlagRedacted != 0)
			if err != nil {
				return fmt.Errorf("event %d: %w", pos, err)
			}
			if ev.ID() != rec.ID {
				return fmt.Errorf("event %d keeps ID %s but hashes to %s", pos, rec.ID, ev.ID())
			}
		}
		return nil
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("HEARTH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Client is a Matrix client for tests: it fails the test on transport
// errors, never on HTTP statuses, which tests assert themselves.
type Client struct {
	t        testing.TB
	URL      string
	Token    string
	Refresh  string
	UserID   string
	DeviceID string
	HTTP     *http.Client
}

// Client returns an anonymous client of s.
func (s *Server) Client(t testing.TB) *Client {
	return &Client{t: t, URL: s.URL, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Response is an HTTP response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any // the body as a JSON object, nil if it is not one
}

// Errcode returns the Matrix errcode of the response, or "".
func (r *Response) Errcode() string {
	s, _ := r.JSON["errcode"].(string)
	return s
}

// Str returns a top-level string field of the JSON body.
func (r *Response) Str(key string) string {
	s, _ := r.JSON[key].(string)
	return s
}

func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Do sends a request. body may be nil, a string or []byte sent as is, or
// anything else sent as JSON. The client's token goes in the
// Authorization header.
func (c *Client) Do(method, path string, body any) *Response {
	c.t.Helper()
	return c.DoWith(method, path, body, nil)
}

// DoWith is Do with extra request headers.
func (c *Client) DoWith(method, path string, body any, header map[string]string) *Response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("marshal request: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	_ = json.Unmarshal(raw, &r.JSON)
	return r
}

// Must sends a request and fails the test unless the status is want.
func (c *Client) Must(want int, method, path string, body any) *Response {
	c.t.Helper()
	r := c.Do(method, path, body)
	if r.Status != want {
		c.t.Fatalf("%s %s: want %d, got %s", method, path, want, r)
	}
	return r
}

var userSeq atomic.Int64

// UniqueName returns a fresh lowercase localpart starting with prefix.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, userSeq.Add(1))
}

// Register registers localpart with password through the open
// m.login.dummy flow and returns a client logged in as it.
func (s *Server) Register(t testing.TB, localpart, password string) *Client {
	t.Helper()
	c := s.Client(t)
	r := c.Must(200, "POST", "/_matrix/client/v3/register", map[string]any{
		"username": localpart, "password": password, "auth": map[string]any{"type": "m.login.dummy"},
	})
	c.Token, c.UserID, c.DeviceID = r.Str("access_token"), r.Str("user_id"), r.Str("device_id")
	return c
}

// Login logs localpart in with a password and returns the client.
func (s *Server) Login(t testing.TB, localpart, password string) *Client {
	t.Helper()
	c := s.Client(t)
	r := c.Must(200, "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": localpart}, "password": password,
	})
	c.Token, c.UserID, c.DeviceID = r.Str("access_token"), r.Str("user_id"), r.Str("device_id")
	return c
}

// PasswordAuth is the UIA auth dict for m.login.password.
func PasswordAuth(session, userID, password string) map[string]any {
	return map[string]any{
		"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": userID},
	}
}
