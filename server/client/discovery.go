package client

import (
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
)

// specVersions are the spec versions whose Client-Server API this server
// serves; v1.11 brought authenticated media.
var specVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
}

type versionsResp struct {
	Versions         []string        `json:"versions"`
	UnstableFeatures map[string]bool `json:"unstable_features"`
}

// versions is GET /_matrix/client/versions (spec: "Server discovery").
func (a *API) versions(r *httpx.Request) (*versionsResp, error) {
	return &versionsResp{Versions: specVersions, UnstableFeatures: map[string]bool{}}, nil
}

type enabled struct {
	Enabled bool `json:"enabled"`
}

type capabilitiesResp struct {
	Capabilities map[string]any `json:"capabilities"`
}

// capabilities is GET /capabilities.
func (a *API) capabilities(r *httpx.Request) (*capabilitiesResp, error) {
	return &capabilitiesResp{Capabilities: map[string]any{
		"m.room_versions":   map[string]any{"default": pdu.DefaultVersion, "available": pdu.Versions()},
		"m.change_password": enabled{true},
		"m.set_displayname": enabled{true},
		"m.set_avatar_url":  enabled{true},
		"m.3pid_changes":    enabled{false},
		"m.get_login_token": enabled{false},
	}}, nil
}

type wellKnownClientResp struct {
	Homeserver struct {
		BaseURL string `json:"base_url"`
	} `json:"m.homeserver"`
}

// wellKnownClient is GET /.well-known/matrix/client.
func (a *API) wellKnownClient(r *httpx.Request) (*wellKnownClientResp, error) {
	if a.cfg.PublicURL == "" {
		return nil, mxerr.NotFound("No public base URL is configured")
	}
	var resp wellKnownClientResp
	resp.Homeserver.BaseURL = a.cfg.PublicURL
	return &resp, nil
}
