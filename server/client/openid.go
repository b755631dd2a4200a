package client

import (
	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

type openIDTokenResp struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int    `json:"expires_in"`
}

// requestOpenIDToken is POST /user/{userId}/openid/request_token: a token
// a third party exchanges through our federation API's /openid/userinfo
// for the caller's user ID, and for nothing else.
func (a *API) requestOpenIDToken(r *httpx.Request, _ *struct{}) (*openIDTokenResp, error) {
	if r.Param("userId") != r.Principal.UserID {
		return nil, mxerr.Forbidden("Cannot request OpenID tokens for other users")
	}
	token, err := a.acc.IssueOpenIDToken(r.Principal.Localpart)
	if err != nil {
		return nil, err
	}
	return &openIDTokenResp{AccessToken: token, TokenType: "Bearer", MatrixServerName: a.acc.ServerName(),
		ExpiresIn: int(accounts.OpenIDLifetime.Seconds())}, nil
}
