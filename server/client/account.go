package client

import (
	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

var passwordFlows = []accounts.Flow{{Stages: []string{accounts.StagePassword}}}

// uiaBind names a request for UIA: the session is valid for this route,
// these parameters and this user only.
func uiaBind(r *httpx.Request) string {
	return r.Route() + " " + r.Principal.UserID
}

type whoamiResp struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	IsGuest  bool   `json:"is_guest"`
}

// whoami is GET /account/whoami.
func (a *API) whoami(r *httpx.Request) (*whoamiResp, error) {
	return &whoamiResp{UserID: r.Principal.UserID, DeviceID: r.Principal.DeviceID}, nil
}

type passwordReq struct {
	NewPassword   string             `json:"new_password"`
	LogoutDevices *bool              `json:"logout_devices"`
	Auth          *accounts.AuthDict `json:"auth"`
}

// changePassword is POST /account/password, behind UIA m.login.password.
// Other devices are logged out unless logout_devices is false.
func (a *API) changePassword(r *httpx.Request, in *passwordReq) (*httpx.Empty, error) {
	if in.NewPassword == "" {
		return nil, mxerr.MissingParam("Missing new_password")
	}
	if _, err := a.acc.UIA(uiaBind(r), passwordFlows, in.Auth, r.Principal.Localpart); err != nil {
		return nil, err
	}
	logout := in.LogoutDevices == nil || *in.LogoutDevices
	return &httpx.Empty{}, a.acc.SetPassword(r.Principal.Localpart, in.NewPassword, logout, r.Principal.DeviceID)
}

type deactivateReq struct {
	Erase bool               `json:"erase"`
	Auth  *accounts.AuthDict `json:"auth"`
}

type deactivateResp struct {
	IDServerUnbindResult string `json:"id_server_unbind_result"`
}

// deactivate is POST /account/deactivate, behind UIA m.login.password.
// No third-party identifiers are bound here, so none are unbound.
func (a *API) deactivate(r *httpx.Request, in *deactivateReq) (*deactivateResp, error) {
	if _, err := a.acc.UIA(uiaBind(r), passwordFlows, in.Auth, r.Principal.Localpart); err != nil {
		return nil, err
	}
	if err := a.acc.Deactivate(r.Principal.Localpart, in.Erase); err != nil {
		return nil, err
	}
	return &deactivateResp{IDServerUnbindResult: "no-support"}, nil
}
