// Package federation is the Server-Server API, both ways: the key API
// and notary, X-Matrix request authentication, the outbound client and
// its persistent per-destination queue, and the inbound routes:
// transactions (PDUs go to the room core's ingest pipeline, EDUs to their
// handlers), the membership handshakes, history reads, queries, media and
// OpenID. The room core reaches other servers through this package's
// implementations of rooms.Remote and rooms.Handshakes.
package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/identity"
	"hearth/server/keys"
	"hearth/server/mxerr"
	"hearth/server/rooms"
	"hearth/store"
)

// Config is what the federation service is started with.
type Config struct {
	ServerName string
	KeyID      string // "ed25519:..."
	Key        ed25519.PrivateKey
	Version    string // of Hearth, for /version
	// RootCAs verifies peers' certificates; nil for the system roots.
	RootCAs *x509.CertPool
	// AllowPrivate lets outbound requests reach private addresses.
	AllowPrivate bool
	Log          *slog.Logger
	// DialContext, when set, replaces the outbound dialer (tests).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Rooms is the room core, which PDUs go to and room reads come from.
	Rooms *rooms.Service
	// Accounts checks OpenID tokens for /openid/userinfo.
	Accounts *accounts.Service
	// WellKnownServer is the delegated "host[:port]" announced in
	// /.well-known/matrix/server; "" for no delegation (404).
	WellKnownServer string
	// Keys answers other servers' key queries and takes their device-list
	// updates.
	Keys *keys.Service
	// Ephemeral delivers what peers' EDUs carry to our clients.
	Ephemeral Ephemeral
	// Identity checks identity servers' keys for third-party invites.
	Identity *identity.Client
	// NoRateLimit turns off the per-IP limit of unauthenticated routes.
	NoRateLimit bool
}

// Service serves the federation and key APIs and holds the outbound
// client and the key ring.
type Service struct {
	cfg    Config
	store  *store.Store
	client *Client
	keys   *KeyRing
	rooms  *rooms.Service
	// edus handles each EDU type a transaction may carry; others are
	// ignored, as the spec says.
	edus map[string]eduHandler
	// onBindIP limits /3pid/onbind per IP (nil: no limit): it needs no
	// authentication and each call may send requests to other servers.
	onBindIP *httpx.Limiter
}

// New returns the federation service of our server.
func New(cfg Config, st *store.Store) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := NewClient(ClientConfig{ServerName: cfg.ServerName, KeyID: cfg.KeyID, Key: cfg.Key,
		RootCAs: cfg.RootCAs, AllowPrivate: cfg.AllowPrivate, DialContext: cfg.DialContext})
	s := &Service{cfg: cfg, store: st, client: c, keys: NewKeyRing(cfg.ServerName, cfg.KeyID, cfg.Key, c),
		rooms: cfg.Rooms}
	s.edus = map[string]eduHandler{
		"m.typing":             s.typingEDU,
		"m.receipt":            s.receiptEDU,
		"m.presence":           s.presenceEDU,
		"m.direct_to_device":   s.toDeviceEDU,
		"m.device_list_update": s.deviceListEDU,
		"m.signing_key_update": s.signingKeyEDU,
	}
	if !cfg.NoRateLimit {
		s.onBindIP = httpx.NewLimiter(0.2, 10)
	}
	return s
}

// Client returns the outbound client, signing as our server.
func (s *Service) Client() *Client { return s.client }

// Keys returns the key ring.
func (s *Service) Keys() *KeyRing { return s.keys }

// Routes is the federation API, served under /_matrix/federation.
func (s *Service) Routes() []httpx.Route {
	return append(append(s.membershipRoutes(), s.thirdPartyRoutes()...), []httpx.Route{
		// Discovery
		{Method: "GET", Path: "/v1/version", Auth: httpx.NoAuth, Handler: httpx.NoBody(s.version)},
		// Queries
		{Method: "GET", Path: "/v1/query/profile", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.queryProfile)},
		{Method: "GET", Path: "/v1/query/directory", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.queryDirectory)},
		// Room directory and spaces
		{Method: "GET", Path: "/v1/publicRooms", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.getPublicRooms)},
		{Method: "POST", Path: "/v1/publicRooms", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.postPublicRooms)},
		{Method: "GET", Path: "/v1/hierarchy/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.hierarchy)},
		{Method: "GET", Path: "/v1/timestamp_to_event/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.timestampToEvent)},
		// OpenID
		{Method: "GET", Path: "/v1/openid/userinfo", Auth: httpx.NoAuth, Handler: httpx.NoBody(s.openIDUserInfo)},
		// Transactions
		{Method: "PUT", Path: "/v1/send/{txnId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.send), MaxBody: maxTxnBody},
		// Retrieving events (events.go)
		{Method: "GET", Path: "/v1/event/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.getEvent)},
		{Method: "GET", Path: "/v1/state/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.getState)},
		{Method: "GET", Path: "/v1/state_ids/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.getStateIDs)},
		{Method: "GET", Path: "/v1/event_auth/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.getEventAuth)},
		// Backfilling and retrieving missing events (events.go)
		{Method: "GET", Path: "/v1/backfill/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.backfill)},
		{Method: "POST", Path: "/v1/get_missing_events/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.getMissingEvents)},
		// End-to-end encryption
		{Method: "GET", Path: "/v1/user/devices/{userId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.userDevices)},
		{Method: "POST", Path: "/v1/user/keys/query", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.userKeysQuery)},
		{Method: "POST", Path: "/v1/user/keys/claim", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.userKeysClaim)},
	}...)
}

// KeyRoutes is the key API, served under /_matrix/key.
func (s *Service) KeyRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v2/server", Auth: httpx.NoAuth, Handler: httpx.NoBody(s.ownKeys)},
		{Method: "POST", Path: "/v2/query", Auth: httpx.NoAuth, Handler: httpx.JSON(s.queryKeys)},
		{Method: "GET", Path: "/v2/query/{serverName}", Auth: httpx.NoAuth, Handler: httpx.NoBody(s.queryServerKeys)},
	}
}

type versionResp struct {
	Server struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"server"`
}

func (s *Service) version(*httpx.Request) (*versionResp, error) {
	var v versionResp
	v.Server.Name, v.Server.Version = "Hearth", s.cfg.Version
	return &v, nil
}

type profileResp struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// queryProfile is GET /_matrix/federation/v1/query/profile: a local
// user's profile, or only the field asked for.
func (s *Service) queryProfile(r *httpx.Request) (*profileResp, error) {
	userID := r.Query("user_id")
	if userID == "" {
		return nil, mxerr.MissingParam("Missing user_id")
	}
	lp, ok := s.localpart(userID)
	if !ok {
		return nil, mxerr.InvalidParam("User %s is not local to this server", userID)
	}
	field := r.Query("field")
	if field != "" && field != "displayname" && field != "avatar_url" {
		return nil, mxerr.InvalidParam("Unknown profile field %q", field)
	}
	var u *store.User
	err := s.store.View(func(tx *store.Tx) error {
		var err error
		u, err = tx.User(lp)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Deactivated) {
		return nil, mxerr.NotFound("Profile was not found")
	}
	if err != nil {
		return nil, err
	}
	var resp profileResp
	if (field == "" || field == "displayname") && u.DisplayName != "" {
		resp.DisplayName = &u.DisplayName
	}
	if (field == "" || field == "avatar_url") && u.AvatarURL != "" {
		resp.AvatarURL = &u.AvatarURL
	}
	return &resp, nil
}

// localpart returns the localpart of a user ID of this server.
func (s *Service) localpart(userID string) (string, bool) {
	lp, server, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	if !ok || !strings.HasPrefix(userID, "@") || server != s.cfg.ServerName || lp == "" {
		return "", false
	}
	return lp, true
}
