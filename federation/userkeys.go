package federation

import (
	"hearth/server/httpx"
	"hearth/server/keys"
	"hearth/server/mxerr"
)

// The end-to-end encryption endpoints of the Server-Server API: other
// servers fetch our users' device lists, query their keys and claim
// their one-time keys. Only our own users are answered.

// userDevices is GET /_matrix/federation/v1/user/devices/{userId}.
func (s *Service) userDevices(r *httpx.Request) (*keys.UserDevices, error) {
	if s.cfg.Keys == nil {
		return nil, mxerr.NotFound("Keys are not served")
	}
	return s.cfg.Keys.LocalUserDevices(r.Param("userId"))
}

type userKeysQueryReq struct {
	DeviceKeys map[string][]string `json:"device_keys"`
}

// userKeysQuery is POST /_matrix/federation/v1/user/keys/query.
func (s *Service) userKeysQuery(r *httpx.Request, in *userKeysQueryReq) (*keys.FederatedQueryResp, error) {
	if in.DeviceKeys == nil {
		return nil, mxerr.MissingParam("Missing device_keys")
	}
	if s.cfg.Keys == nil {
		return nil, mxerr.NotFound("Keys are not served")
	}
	return s.cfg.Keys.LocalKeysForServer(in.DeviceKeys)
}

type userKeysClaimReq struct {
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
}

// userKeysClaim is POST /_matrix/federation/v1/user/keys/claim.
func (s *Service) userKeysClaim(r *httpx.Request, in *userKeysClaimReq) (*keys.FederatedClaimResp, error) {
	if in.OneTimeKeys == nil {
		return nil, mxerr.MissingParam("Missing one_time_keys")
	}
	if s.cfg.Keys == nil {
		return nil, mxerr.NotFound("Keys are not served")
	}
	return s.cfg.Keys.ClaimForServer(in.OneTimeKeys)
}
