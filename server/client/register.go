package client

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

type registerReq struct {
	Username                 *string            `json:"username"` // nil: generate one; "" is invalid, as in Synapse
	Password                 string             `json:"password"`
	DeviceID                 string             `json:"device_id"`
	InitialDeviceDisplayName string             `json:"initial_device_display_name"`
	InhibitLogin             bool               `json:"inhibit_login"`
	RefreshToken             bool               `json:"refresh_token"`
	Auth                     *accounts.AuthDict `json:"auth"`
}

// register is POST /register. The username and the password's length are
// checked before UIA starts, as Synapse does, so a client learns of a taken
// name at once.
func (a *API) register(r *httpx.Request, in *registerReq) (*accounts.Login, error) {
	switch kind := r.Query("kind"); kind {
	case "", "user":
	case "guest":
		return nil, mxerr.Forbidden("Guest access is disabled")
	default:
		return nil, mxerr.InvalidParam("Unknown kind %q", kind)
	}
	var lp string
	if in.Username != nil {
		lp = strings.ToLower(*in.Username)
		if err := a.acc.Available(lp); err != nil {
			return nil, err
		}
	}
	if err := accounts.ValidatePassword(in.Password); err != nil {
		return nil, err
	}
	flows := []accounts.Flow{{Stages: []string{accounts.StageRegToken}}}
	if a.acc.OpenRegistration() {
		flows = []accounts.Flow{{Stages: []string{accounts.StageDummy}}}
	}
	done, err := a.acc.UIA("POST /register", flows, in.Auth, "")
	if err != nil {
		return nil, err
	}
	// Checked after UIA, as Synapse does, so that a bare {} still learns
	// the flows: an account without a password could never log in.
	if in.Password == "" {
		return nil, mxerr.MissingParam("Missing password")
	}
	var dev *accounts.DeviceRequest
	if !in.InhibitLogin {
		dev = &accounts.DeviceRequest{
			DeviceID: in.DeviceID, DisplayName: in.InitialDeviceDisplayName,
			Refresh: in.RefreshToken, IP: r.RemoteIP,
		}
	}
	newUser := accounts.NewUser{Localpart: lp, Password: in.Password, RegToken: done.RegToken}
	if lp != "" {
		return a.acc.CreateUser(newUser, dev)
	}
	// No username: generate a numeric one, as Synapse does; such names
	// cannot be chosen, so a clash is only with another generated name.
	for range 10 {
		n, _ := rand.Int(rand.Reader, big.NewInt(1e10))
		newUser.Localpart = fmt.Sprintf("%010d", n)
		login, err := a.acc.CreateUser(newUser, dev)
		if e, ok := mxerr.As(err); ok && e.Code == "M_USER_IN_USE" {
			continue
		}
		return login, err
	}
	return nil, errors.New("could not generate a free user ID")
}

type availableResp struct {
	Available bool `json:"available"`
}

// registerAvailable is GET /register/available.
func (a *API) registerAvailable(r *httpx.Request) (*availableResp, error) {
	if !r.HasQuery("username") {
		return nil, mxerr.MissingParam("Missing username")
	}
	if err := a.acc.Available(strings.ToLower(r.Query("username"))); err != nil {
		return nil, err
	}
	return &availableResp{Available: true}, nil
}

type validityResp struct {
	Valid bool `json:"valid"`
}

// registrationTokenValidity is GET
// /_matrix/client/v1/register/m.login.registration_token/validity.
func (a *API) registrationTokenValidity(r *httpx.Request) (*validityResp, error) {
	token := r.Query("token")
	if token == "" {
		return nil, mxerr.MissingParam("Missing token")
	}
	valid, err := a.acc.RegTokenValid(token)
	return &validityResp{Valid: valid}, err
}
