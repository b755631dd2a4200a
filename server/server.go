// Package server assembles a Hearth homeserver: it opens the store, checks
// the data directory belongs to this server name, wires the API areas into
// the listeners and shuts everything down cleanly.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"hearth/admin"
	"hearth/federation"
	"hearth/media"
	"hearth/media/preview"
	"hearth/server/accounts"
	"hearth/server/backup"
	"hearth/server/client"
	"hearth/server/httpx"
	"hearth/server/identity"
	"hearth/server/keys"
	"hearth/server/pdu"
	"hearth/server/rooms"
	"hearth/server/syncapi"
	"hearth/store"
)

// Config is everything a server is started with.
type Config struct {
	DataDir    string
	ServerName string
	HTTPAddr   string // plain-HTTP client API listener, "" for none
	// PublicURL is the base URL clients reach us at, announced in
	// /.well-known/matrix/client; "" serves no client discovery.
	PublicURL                string
	OpenRegistration         bool
	RegistrationSharedSecret string // enables /_synapse/admin/v1/register
	NoRateLimit              bool
	NoPresence               bool // presence off: everyone shows offline
	Argon2                   accounts.Argon2Params
	AccessTokenLifetime      time.Duration // of refreshable tokens; 0 for the default
	Version                  string
	Log                      *slog.Logger
	// LegacyMedia serves local media on the deprecated unauthenticated
	// /_matrix/media download endpoints too (--legacy-media).
	LegacyMedia bool
	// MaxUploadSize bounds one media upload in bytes; 0 for the default.
	MaxUploadSize int64
	// MediaQuota bounds the media bytes one user may upload; 0 for none.
	MediaQuota int64
	// AllowPrivateAddresses lets outbound requests (URL previews,
	// federation, identity servers) reach private, loopback and link-local
	// addresses (--allow-private-addresses).
	AllowPrivateAddresses bool
	// FederationAddr is the HTTPS listener (federation, keys, and the
	// client and media APIs too), "" for none; it needs TLSCertFile and
	// TLSKeyFile.
	FederationAddr string
	TLSCertFile    string
	TLSKeyFile     string
	// TrustCAFile is a PEM CA trusted, besides the system roots, for
	// outbound federation TLS (--trust-ca).
	TrustCAFile string
	// FederationDial, when set, dials outbound federation connections in
	// place of the guarded dialer: tests cut links between servers with it.
	FederationDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// NoFederation serves no federation or key API (--no-federation).
	NoFederation bool
	// DeviceNamesOverFederation shows other servers our users' device
	// display names (--device-names-over-federation); off by default.
	DeviceNamesOverFederation bool
	// WellKnownServer delegates federation for the server name to
	// "host[:port]" in /.well-known/matrix/server (--well-known-server);
	// "" serves 404 there.
	WellKnownServer string
}

// Server is a running homeserver.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Store
	accounts   *accounts.Service
	rooms      *rooms.Service
	notifier   *syncapi.Notifier
	media      *media.Service
	keys       *keys.Service
	sync       *syncapi.API
	identity   *identity.Client    // reaches the identity servers users name
	federation *federation.Service // nil with NoFederation
	sender     *federation.Sender  // outbound federation queue; nil with NoFederation
	tlsConfig  *tls.Config         // of the HTTPS listener, nil for none
	httpSrv    *httpx.Server
	signingKey ed25519.PrivateKey
	keyID      string
	bootstrap  string // one-time registration token for the first admin, if any

	mu          sync.Mutex // guards listeners, tlsListener
	listeners   []net.Listener
	tlsListener net.Listener // the HTTPS listener among listeners, if any
	serveErr    chan error
	// stopBackground ends the background work Start began.
	stopBackground context.CancelFunc
}

// Open opens the data directory and prepares the server without listening.
// A data directory made for another server name is an error.
func Open(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ServerName == "" {
		return nil, errors.New("server name must not be empty")
	}
	st, err := store.Open(cfg.DataDir, time.Second)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, store: st, serveErr: make(chan error, 4)}
	if err := s.initData(); err != nil {
		st.Close()
		return nil, err
	}
	s.accounts = accounts.New(accounts.Config{
		ServerName:          cfg.ServerName,
		OpenRegistration:    cfg.OpenRegistration,
		AccessTokenLifetime: cfg.AccessTokenLifetime,
		Argon2:              cfg.Argon2,
	}, st, cfg.Log)
	if !cfg.OpenRegistration {
		if s.bootstrap, err = s.bootstrapToken(); err != nil {
			st.Close()
			return nil, err
		}
	}

	mux := &httpx.Mux{}
	s.rooms = rooms.New(st, pdu.Signer{ServerName: cfg.ServerName, KeyID: s.keyID, Key: s.signingKey}, cfg.Log)
	var latest uint64
	_ = st.View(func(tx *store.Tx) error { latest = tx.LatestPos(); return nil })
	s.notifier = syncapi.NewNotifier(latest)
	s.rooms.OnAppend = s.notifyAppend
	s.rooms.OnNotify = func(pos uint64, users ...string) { s.notifier.Notify(pos, users) }
	s.rooms.OnJoined = s.federateDevicesOnJoin
	// Keys and sync first: federation delivers EDUs to them.
	s.keys = keys.New(st, s.accounts, s.notifyDeviceChange)
	s.keys.DeviceNamesOverFederation = cfg.DeviceNamesOverFederation
	s.accounts.OnDevicesChanged = func(lp string) { s.keys.DeviceChanged(s.accounts.UserID(lp)) }
	s.sync = syncapi.New(st, s.rooms, s.notifier, !cfg.NoPresence, s.keys)
	// Identity servers are reached with the trust federation has.
	roots, err := federation.CertPool(cfg.TrustCAFile)
	if err != nil {
		st.Close()
		return nil, err
	}
	s.identity = identity.New(cfg.AllowPrivateAddresses, roots)
	if err := s.openFederation(mux); err != nil {
		st.Close()
		return nil, err
	}
	api := client.New(s.accounts, s.rooms, client.Config{PublicURL: cfg.PublicURL, NoRateLimit: cfg.NoRateLimit,
		Remote: s.clientRemote(), Identity: s.identity})
	mux.Handle("/_matrix/client", api.Routes())
	mux.Handle("/_matrix/client", s.keys.Routes())
	mux.Handle("/_matrix/client", s.sync.Routes())
	mux.Handle("/_matrix/client", backup.New(st).Routes())
	repo, err := media.New(media.Config{ServerName: cfg.ServerName, DataDir: cfg.DataDir,
		MaxUploadSize: cfg.MaxUploadSize, Quota: cfg.MediaQuota, Legacy: cfg.LegacyMedia}, st, cfg.Log)
	if err != nil {
		st.Close()
		return nil, err
	}
	s.media = repo
	repo.Remote = s.fetchRemoteMedia
	mux.Handle("/_matrix/media", repo.Routes())
	if s.federation != nil {
		mux.Handle("/_matrix/federation", repo.FederationRoutes())
	}
	mux.Handle("/_matrix/client", repo.ClientRoutes())
	previews := preview.New(preview.Config{
		AllowPrivate: cfg.AllowPrivateAddresses, NoRateLimit: cfg.NoRateLimit, Log: cfg.Log,
		StoreImage: func(_ context.Context, userID, contentType string, body io.Reader) (string, error) {
			return repo.StoreLocal(userID, contentType, "preview", body)
		},
	})
	mux.Handle("/_matrix/media", previews.Routes())
	mux.Handle("/_matrix/client", previews.ClientRoutes())
	mux.Handle("", api.WellKnownRoutes())
	mux.Handle("/_synapse/admin", admin.New(s.accounts, cfg.RegistrationSharedSecret).Routes())
	// Uploads stream to disk; fasthttp buffers bodies up to this limit
	// before streaming the rest, so it stays at the JSON routes' size.
	s.httpSrv = httpx.NewServer(mux, s.authenticate, cfg.Log, httpx.DefaultMaxBody)
	if s.federation != nil {
		s.httpSrv.SetServerAuth(func(r *httpx.Request) (string, error) {
			origin, err := s.federation.Authenticate(r)
			if err == nil && s.sender != nil {
				s.sender.Retry(origin) // it is up: what waits for it goes now
			}
			return origin, err
		})
	}
	return s, nil
}

// initData records the server name on first start (and checks it on every
// later one) and makes the signing key if there is none.
func (s *Server) initData() error {
	return s.store.Update(func(tx *store.Tx) error {
		switch have := tx.ServerName(); {
		case have == "":
			if err := tx.SetServerName(s.cfg.ServerName); err != nil {
				return err
			}
		case have != s.cfg.ServerName:
			return fmt.Errorf("the data directory %s belongs to server name %q, not %q: "+
				"a server name cannot change once users and rooms exist; start with --server-name %s or use another --data directory",
				s.cfg.DataDir, have, s.cfg.ServerName, have)
		}
		k, err := tx.SigningKey()
		if errors.Is(err, store.ErrNotFound) {
			k = &store.SigningKey{ID: "ed25519:a_" + randomAlnum(6), Seed: make([]byte, ed25519.SeedSize)}
			if _, err := rand.Read(k.Seed); err != nil {
				return err
			}
			if err := tx.PutSigningKey(k); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		s.signingKey, s.keyID = ed25519.NewKeyFromSeed(k.Seed), k.ID
		return nil
	})
}

// randomAlnum returns n random letters and digits (about 5.95 bits each).
func randomAlnum(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// bootstrapToken returns the one-time registration token for the first
// admin while no admin exists, creating it if needed; "" once one does.
func (s *Server) bootstrapToken() (string, error) {
	var token string
	err := s.store.Update(func(tx *store.Tx) error {
		token = ""
		users, err := tx.Users()
		if err != nil {
			return err
		}
		for _, u := range users {
			if u.Admin && !u.Deactivated {
				return nil
			}
		}
		toks, err := tx.RegTokens()
		if err != nil {
			return err
		}
		now := time.Now().UnixMilli()
		for _, t := range toks {
			if t.Bootstrap && t.Usable(now) {
				token = t.Token
				return nil
			}
		}
		one := 1
		t := &store.RegToken{Token: randomAlnum(24), UsesAllowed: &one, Bootstrap: true}
		token = t.Token
		return tx.PutRegToken(t)
	})
	return token, err
}

// notifyAppend wakes the syncs of everyone in the rooms new events landed
// in.
func (s *Server) notifyAppend(pos uint64, roomIDs ...string) {
	// Room by room: the member lists are the cache's own, shared, and a
	// room's can run to thousands of users, too many to copy per event.
	if len(roomIDs) == 0 {
		s.notifier.Notify(pos, nil)
	}
	for _, id := range roomIDs {
		members, err := s.rooms.MemberIDs(id)
		if err != nil {
			s.log.Warn("sync notification: room members", "room", id, "err", err)
		}
		s.notifier.Notify(pos, members)
	}
}

// notifyDeviceChange wakes the syncs of userID and everyone sharing a
// room with them: userID's devices or keys changed at pos.
func (s *Server) notifyDeviceChange(pos uint64, userID string) {
	peers, err := s.rooms.SharedUsers(userID)
	if err != nil {
		s.log.Warn("sync notification: users sharing a room", "user", userID, "err", err)
	}
	s.notifier.Notify(pos, append(peers, userID))
	if _, local := s.accounts.LocalpartOf(userID); local && s.sender != nil {
		s.federateDeviceList(userID, peers)
	}
}

// BootstrapToken is the one-time registration token that makes the first
// admin account, or "" when an admin exists or registration is open.
func (s *Server) BootstrapToken() string { return s.bootstrap }

// Store returns the server's store (for the CLI and tests).
func (s *Server) Store() *store.Store { return s.store }

// Sender returns the outbound federation queue; nil with NoFederation.
func (s *Server) Sender() *federation.Sender { return s.sender }

// Accounts returns the account service (for the CLI).
func (s *Server) Accounts() *accounts.Service { return s.accounts }

func (s *Server) authenticate(token, ip string, allowExpired bool) (*httpx.Principal, error) {
	c, err := s.accounts.Authenticate(token, ip, allowExpired)
	if err != nil {
		return nil, err
	}
	return &httpx.Principal{
		UserID: s.accounts.UserID(c.Localpart), Localpart: c.Localpart,
		DeviceID: c.DeviceID, Admin: c.Admin, Expired: c.Expired,
	}, nil
}

// Start opens the configured listeners and serves them in the background.
func (s *Server) Start() error {
	if s.sender != nil {
		// Resume what the previous run left queued for other servers.
		if err := s.sender.Start(); err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.stopBackground = cancel
		go s.federation.PruneTransactions(ctx)
	}
	if err := s.startTLS(); err != nil {
		return err
	}
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.HTTPAddr, err)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.log.Info("client API listening", "addr", "http://"+ln.Addr().String(), "server_name", s.cfg.ServerName)
	go func() { s.serveErr <- s.httpSrv.Serve(ln) }() // ends when Shutdown closes ln
	return nil
}

// Addr returns the address of the client API listener, once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		if ln != s.tlsListener {
			return ln.Addr().String()
		}
	}
	return ""
}

// Errors reports a listener that stopped on its own.
func (s *Server) Errors() <-chan error { return s.serveErr }

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// and closes the database cleanly.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.httpSrv.Shutdown(ctx)
	s.media.Close() // thumbnails being written, before the data goes away
	if s.sender != nil {
		s.sender.Close() // its queue stays on disk for the next start
	}
	if s.stopBackground != nil {
		s.stopBackground()
	}
	return errors.Join(err, s.store.Close())
}

// RecordedServerName returns the server name recorded in a data directory,
// or "" for a directory no server has started in.
func RecordedServerName(dataDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dataDir, store.FileName)); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	st, err := store.Open(dataDir, time.Second)
	if err != nil {
		return "", err
	}
	defer st.Close()
	var name string
	err = st.View(func(tx *store.Tx) error { name = tx.ServerName(); return nil })
	return name, err
}
