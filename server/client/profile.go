package client

import (
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// Limits of profile fields, Synapse's.
const (
	maxDisplayNameLen = 256
	maxAvatarURLLen   = 1000
)

type profileResp struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// profileUser returns the local account a profile path names. Profiles of
// remote users are fetched over federation once it exists; until then
// they are not found, which the spec allows for unreachable profiles.
func (a *API) profileUser(r *httpx.Request) (*store.User, error) {
	lp, ok := a.acc.LocalpartOf(r.Param("userId"))
	if !ok {
		return nil, mxerr.NotFound("Profile was not found")
	}
	u, err := a.acc.User(lp)
	if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
		return nil, mxerr.NotFound("Profile was not found")
	}
	return u, err
}

// getProfile is GET /profile/{userId}.
func (a *API) getProfile(r *httpx.Request) (*profileResp, error) {
	u, err := a.profileUser(r)
	if err != nil {
		return nil, err
	}
	return &profileResp{DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}, nil
}

type displayNameBody struct {
	DisplayName *string `json:"displayname"`
}

// getDisplayName is GET /profile/{userId}/displayname; 404 when unset, as
// the spec says.
func (a *API) getDisplayName(r *httpx.Request) (*displayNameBody, error) {
	u, err := a.profileUser(r)
	if err != nil {
		return nil, err
	}
	if u.DisplayName == "" {
		return nil, mxerr.NotFound("No display name set")
	}
	return &displayNameBody{DisplayName: &u.DisplayName}, nil
}

type avatarURLBody struct {
	AvatarURL *string `json:"avatar_url"`
}

// getAvatarURL is GET /profile/{userId}/avatar_url; 404 when unset.
func (a *API) getAvatarURL(r *httpx.Request) (*avatarURLBody, error) {
	u, err := a.profileUser(r)
	if err != nil {
		return nil, err
	}
	if u.AvatarURL == "" {
		return nil, mxerr.NotFound("No avatar URL set")
	}
	return &avatarURLBody{AvatarURL: &u.AvatarURL}, nil
}

// ownProfile checks that the caller may change the profile in the path:
// their own, or any local one for an admin.
func (a *API) ownProfile(r *httpx.Request) (string, error) {
	if r.Param("userId") != r.Principal.UserID && !r.Principal.Admin {
		return "", mxerr.Forbidden("Cannot change another user's profile")
	}
	lp, ok := a.acc.LocalpartOf(r.Param("userId"))
	if !ok {
		return "", mxerr.Forbidden("Cannot change the profile of a remote user")
	}
	return lp, nil
}

// setDisplayName is PUT /profile/{userId}/displayname; "" clears it.
func (a *API) setDisplayName(r *httpx.Request, in *displayNameBody) (*httpx.Empty, error) {
	lp, err := a.ownProfile(r)
	if err != nil {
		return nil, err
	}
	if in.DisplayName == nil {
		return nil, mxerr.MissingParam("Missing displayname")
	}
	if len(*in.DisplayName) > maxDisplayNameLen {
		return nil, mxerr.InvalidParam("Display name is longer than %d bytes", maxDisplayNameLen)
	}
	if err := a.acc.UpdateProfile(lp, func(u *store.User) { u.DisplayName = *in.DisplayName }); err != nil {
		return nil, err
	}
	a.rooms.PropagateProfile(r.Param("userId"), map[string]string{"displayname": *in.DisplayName})
	return &httpx.Empty{}, nil
}

// setAvatarURL is PUT /profile/{userId}/avatar_url; "" clears it.
func (a *API) setAvatarURL(r *httpx.Request, in *avatarURLBody) (*httpx.Empty, error) {
	lp, err := a.ownProfile(r)
	if err != nil {
		return nil, err
	}
	if in.AvatarURL == nil {
		return nil, mxerr.MissingParam("Missing avatar_url")
	}
	url := *in.AvatarURL
	if len(url) > maxAvatarURLLen {
		return nil, mxerr.InvalidParam("Avatar URL is longer than %d bytes", maxAvatarURLLen)
	}
	if err := a.acc.UpdateProfile(lp, func(u *store.User) { u.AvatarURL = url }); err != nil {
		return nil, err
	}
	a.rooms.PropagateProfile(r.Param("userId"), map[string]string{"avatar_url": url})
	return &httpx.Empty{}, nil
}
