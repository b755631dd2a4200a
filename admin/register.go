// Package admin serves the admin API on Synapse's paths, so that scripts
// and test suites written for Synapse work against Hearth.
package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// API is the admin API of one server.
type API struct {
	acc    *accounts.Service
	secret string // shared secret for /v1/register; "" disables it

	mu     sync.Mutex // guards nonces
	nonces map[string]time.Time
}

// New returns the admin API. secret enables shared-secret registration.
func New(acc *accounts.Service, secret string) *API {
	return &API{acc: acc, secret: secret, nonces: map[string]time.Time{}}
}

// Routes is the admin route table, mounted at /_synapse/admin.
func (a *API) Routes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v1/register", Handler: httpx.NoBody(a.registerNonce)},
		{Method: "POST", Path: "/v1/register", Handler: httpx.JSON(a.registerWithSecret)},
	}
}

// nonceLifetime is how long a nonce stays usable, Synapse's 60 s.
const nonceLifetime = time.Minute

type nonceResp struct {
	Nonce string `json:"nonce"`
}

// registerNonce is GET /_synapse/admin/v1/register.
func (a *API) registerNonce(r *httpx.Request) (*nonceResp, error) {
	if a.secret == "" {
		return nil, mxerr.Unknown("Shared secret registration is not enabled")
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	nonce := hex.EncodeToString(b)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for n, t := range a.nonces {
		if now.Sub(t) > nonceLifetime {
			delete(a.nonces, n)
		}
	}
	a.nonces[nonce] = now
	return &nonceResp{Nonce: nonce}, nil
}

type secretRegisterReq struct {
	Nonce       string `json:"nonce"`
	Username    string `json:"username"`
	DisplayName string `json:"displayname"`
	Password    string `json:"password"`
	Admin       bool   `json:"admin"`
	UserType    string `json:"user_type"`
	MAC         string `json:"mac"`
}

// registerWithSecret is POST /_synapse/admin/v1/register: the MAC is
// HMAC-SHA1 over nonce, username, password and "admin"/"notadmin" (and
// user_type when given), NUL-separated, keyed by the shared secret.
func (a *API) registerWithSecret(r *httpx.Request, in *secretRegisterReq) (*accounts.Login, error) {
	if a.secret == "" {
		return nil, mxerr.Unknown("Shared secret registration is not enabled")
	}
	a.mu.Lock()
	issued, ok := a.nonces[in.Nonce]
	delete(a.nonces, in.Nonce)
	a.mu.Unlock()
	if !ok || time.Since(issued) > nonceLifetime {
		return nil, mxerr.Unknown("Unrecognised nonce")
	}
	if in.Username == "" || in.Password == "" {
		return nil, mxerr.MissingParam("username and password are required")
	}
	role := "notadmin"
	if in.Admin {
		role = "admin"
	}
	msg := in.Nonce + "\x00" + in.Username + "\x00" + in.Password + "\x00" + role
	if in.UserType != "" {
		msg += "\x00" + in.UserType
	}
	mac := hmac.New(sha1.New, []byte(a.secret))
	mac.Write([]byte(msg))
	got, err := hex.DecodeString(in.MAC)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return nil, mxerr.Forbidden("HMAC incorrect")
	}
	lp := strings.ToLower(in.Username)
	if err := a.acc.Available(lp); err != nil {
		return nil, err
	}
	login, err := a.acc.CreateUser(accounts.NewUser{Localpart: lp, Password: in.Password, Admin: in.Admin},
		&accounts.DeviceRequest{IP: r.RemoteIP})
	if err != nil {
		return nil, err
	}
	if in.DisplayName != "" {
		if err := a.acc.UpdateProfile(lp, func(u *store.User) { u.DisplayName = in.DisplayName }); err != nil {
			return nil, err
		}
	}
	return login, nil
}
