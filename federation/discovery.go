package federation

import (
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

// CheckServerName returns an error unless name is a valid server name
// (appendix "Server Name"), as --well-known-server must be.
func CheckServerName(name string) error {
	_, _, _, err := parseServerName(name)
	return err
}

// WellKnownRoutes are served at the root of the listeners.
func (s *Service) WellKnownRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/.well-known/matrix/server", Auth: httpx.NoAuth, Handler: httpx.NoBody(s.wellKnownServer)},
	}
}

type wellKnownServerResp struct {
	Server string `json:"m.server"`
}

// wellKnownServer is GET /.well-known/matrix/server: where federation for
// our server name is delegated, when it is. Without delegation it is 404,
// which tells other servers to try SRV and then port 8448 of the name.
func (s *Service) wellKnownServer(*httpx.Request) (*wellKnownServerResp, error) {
	if s.cfg.WellKnownServer == "" {
		return nil, mxerr.NotFound("Federation for this server name is not delegated")
	}
	return &wellKnownServerResp{Server: s.cfg.WellKnownServer}, nil
}

type userInfoResp struct {
	Sub string `json:"sub"`
}

// openIDUserInfo is GET /_matrix/federation/v1/openid/userinfo: whose an
// OpenID token from request_token is. The token is the authentication; no
// X-Matrix signature is asked for.
func (s *Service) openIDUserInfo(r *httpx.Request) (*userInfoResp, error) {
	token := r.Query("access_token")
	if token == "" || s.cfg.Accounts == nil {
		return nil, mxerr.UnknownToken(false)
	}
	sub, err := s.cfg.Accounts.OpenIDUser(token)
	if err != nil {
		return nil, err
	}
	return &userInfoResp{Sub: sub}, nil
}
