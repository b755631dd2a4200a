package client

import (
	"time"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

type loginFlow struct {
	Type string `json:"type"`
}

type loginFlowsResp struct {
	Flows []loginFlow `json:"flows"`
}

// loginFlows is GET /login.
func (a *API) loginFlows(r *httpx.Request) (*loginFlowsResp, error) {
	return &loginFlowsResp{Flows: []loginFlow{{Type: accounts.StagePassword}}}, nil
}

type loginReq struct {
	Type                     string               `json:"type"`
	Identifier               *accounts.Identifier `json:"identifier"`
	User                     string               `json:"user"` // legacy form of identifier
	Password                 string               `json:"password"`
	DeviceID                 string               `json:"device_id"`
	InitialDeviceDisplayName string               `json:"initial_device_display_name"`
	RefreshToken             bool                 `json:"refresh_token"`
}

// login is POST /login with m.login.password.
func (a *API) login(r *httpx.Request, in *loginReq) (*accounts.Login, error) {
	if in.Type != accounts.StagePassword {
		return nil, mxerr.Unknown("Unknown login type %q", in.Type)
	}
	who := in.User
	if in.Identifier != nil {
		if in.Identifier.Type != "m.id.user" {
			return nil, mxerr.Unknown("Only m.id.user identifiers are supported")
		}
		who = in.Identifier.User
	}
	if who == "" {
		return nil, mxerr.MissingParam("Missing user identifier")
	}
	lp, ok := a.acc.ParseLoginUser(who)
	if !ok {
		return nil, mxerr.Forbidden("Invalid username or password")
	}
	if ok, wait := a.loginAccount.Allow("login:"+lp, time.Now()); !ok {
		return nil, mxerr.LimitExceeded(wait)
	}
	return a.acc.LoginPassword(lp, in.Password, &accounts.DeviceRequest{
		DeviceID: in.DeviceID, DisplayName: in.InitialDeviceDisplayName,
		Refresh: in.RefreshToken, IP: r.RemoteIP,
	})
}

type refreshReq struct {
	RefreshToken string `json:"refresh_token"`
}

// refresh is POST /refresh.
func (a *API) refresh(r *httpx.Request, in *refreshReq) (*accounts.Refreshed, error) {
	if in.RefreshToken == "" {
		return nil, mxerr.MissingParam("Missing refresh_token")
	}
	return a.acc.Refresh(in.RefreshToken)
}

// logout is POST /logout: the device and its tokens go.
func (a *API) logout(r *httpx.Request) (*httpx.Empty, error) {
	return &httpx.Empty{}, a.acc.Logout(r.Principal.Localpart, r.Principal.DeviceID)
}

// logoutAll is POST /logout/all: every device of the user goes.
func (a *API) logoutAll(r *httpx.Request) (*httpx.Empty, error) {
	return &httpx.Empty{}, a.acc.LogoutAll(r.Principal.Localpart, "")
}
