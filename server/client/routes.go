// Package client serves the Matrix Client-Server API: one route table,
// one file per area of the spec.
package client

import (
	"context"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/identity"
	"hearth/server/rooms"
)

// Config is what the client API needs of the server's settings.
type Config struct {
	PublicURL   string // announced in /.well-known/matrix/client; "" for none
	NoRateLimit bool
	// Remote asks other servers on our clients' behalf; without it
	// (federation off) what lives on other servers is not found.
	Remote Remote
	// Identity reaches the identity servers clients name (third-party
	// invites); nil refuses those invites.
	Identity *identity.Client
}

// Remote is what the client API asks of other servers. Each function
// returns a Matrix error a client may be shown (404 for what the other
// server does not have, 502 when it cannot be reached); a nil function
// answers 404.
type Remote struct {
	// Profile returns a remote user's profile, or only field
	// ("displayname", "avatar_url") when not ""; nil for an unset field.
	Profile func(ctx context.Context, userID, field string) (displayName, avatarURL *string, err error)
	// Alias resolves a room alias of another server.
	Alias func(ctx context.Context, alias string) (*rooms.AliasTarget, error)
	// PublicRooms lists the room directory of q.Server, another server.
	PublicRooms func(ctx context.Context, q *rooms.PublicRoomsQuery) (*rooms.PublicRoomsPage, error)
}

// API holds the client API handlers of one server.
type API struct {
	cfg   Config
	acc   *accounts.Service
	rooms *rooms.Service

	// Rate limits, after Synapse's defaults but kinder to a family behind
	// one address. Nil when rate limiting is off.
	registerIP   *httpx.Limiter // registration and availability checks, per IP
	validityIP   *httpx.Limiter // registration token validity checks, per IP
	loginIP      *httpx.Limiter // login attempts per IP
	loginAccount *httpx.Limiter // login attempts per target account
	reportIP     *httpx.Limiter // reports of rooms and events, per IP
}

// New returns the client API over the account and room services.
func New(acc *accounts.Service, rs *rooms.Service, cfg Config) *API {
	a := &API{cfg: cfg, acc: acc, rooms: rs}
	if !cfg.NoRateLimit {
		a.registerIP = httpx.NewLimiter(0.17, 5)
		a.validityIP = httpx.NewLimiter(0.17, 5)
		a.loginIP = httpx.NewLimiter(0.1, 10)
		a.loginAccount = httpx.NewLimiter(0.05, 5)
		a.reportIP = httpx.NewLimiter(0.1, 10)
	}
	return a
}

// Routes is the Client-Server API's route table, mounted at
// /_matrix/client; "/v3/..." routes are served under r0 too.
func (a *API) Routes() []httpx.Route {
	return append(append(append(a.accountRoutes(), a.roomRoutes()...), a.directoryRoutes()...), a.relationRoutes()...)
}

// accountRoutes is the table of discovery, login, registration, account,
// device and profile endpoints.
func (a *API) accountRoutes() []httpx.Route {
	return []httpx.Route{
		// Server discovery and capabilities.
		{Method: "GET", Path: "/versions", Handler: httpx.NoBody(a.versions)},
		{Method: "GET", Path: "/v3/capabilities", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.capabilities)},

		// Login, refresh and logout.
		{Method: "GET", Path: "/v3/login", Handler: httpx.NoBody(a.loginFlows)},
		{Method: "POST", Path: "/v3/login", Limit: a.loginIP, Handler: httpx.JSON(a.login)},
		{Method: "POST", Path: "/v3/refresh", Handler: httpx.JSON(a.refresh)},
		{Method: "POST", Path: "/v3/logout", Auth: httpx.ExpiredOK, Handler: httpx.NoBody(a.logout)},
		{Method: "POST", Path: "/v3/logout/all", Auth: httpx.ExpiredOK, Handler: httpx.NoBody(a.logoutAll)},

		// Account registration.
		{Method: "POST", Path: "/v3/register", Limit: a.registerIP, Handler: httpx.JSON(a.register)},
		{Method: "GET", Path: "/v3/register/available", Limit: a.registerIP, Handler: httpx.NoBody(a.registerAvailable)},
		{Method: "GET", Path: "/v1/register/m.login.registration_token/validity", Limit: a.validityIP, Handler: httpx.NoBody(a.registrationTokenValidity)},

		// Account management.
		{Method: "GET", Path: "/v3/account/whoami", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.whoami)},
		{Method: "POST", Path: "/v3/account/password", Auth: httpx.UserAuth, Handler: httpx.JSON(a.changePassword)},
		{Method: "POST", Path: "/v3/account/deactivate", Auth: httpx.UserAuth, Handler: httpx.JSON(a.deactivate)},

		// Device management.
		{Method: "GET", Path: "/v3/devices", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.listDevices)},
		{Method: "GET", Path: "/v3/devices/{deviceId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getDevice)},
		{Method: "PUT", Path: "/v3/devices/{deviceId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putDevice)},
		{Method: "DELETE", Path: "/v3/devices/{deviceId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.deleteDevice)},
		{Method: "POST", Path: "/v3/delete_devices", Auth: httpx.UserAuth, Handler: httpx.JSON(a.deleteDevices)},

		// Profiles.
		{Method: "GET", Path: "/v3/profile/{userId}", Auth: httpx.OptionalAuth, Handler: httpx.NoBody(a.getProfile)},
		{Method: "GET", Path: "/v3/profile/{userId}/displayname", Auth: httpx.OptionalAuth, Handler: httpx.NoBody(a.getDisplayName)},
		{Method: "PUT", Path: "/v3/profile/{userId}/displayname", Auth: httpx.UserAuth, Handler: httpx.JSON(a.setDisplayName)},
		{Method: "GET", Path: "/v3/profile/{userId}/avatar_url", Auth: httpx.OptionalAuth, Handler: httpx.NoBody(a.getAvatarURL)},
		{Method: "PUT", Path: "/v3/profile/{userId}/avatar_url", Auth: httpx.UserAuth, Handler: httpx.JSON(a.setAvatarURL)},

		// OpenID.
		{Method: "POST", Path: "/v3/user/{userId}/openid/request_token", Auth: httpx.UserAuth, Handler: httpx.JSON(a.requestOpenIDToken)},
	}
}

// WellKnownRoutes are served at the root of the listener.
func (a *API) WellKnownRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/.well-known/matrix/client", Handler: httpx.NoBody(a.wellKnownClient)},
	}
}
