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

// lookupProfile returns the profile a profile path names, or only its
// field ("displayname", "avatar_url") when not "": a local account's from
// the store, a remote user's from their server.
func (a *API) lookupProfile(r *httpx.Request, field string) (displayName, avatarURL string, err error) {
	userID := r.Param("userId")
	lp, ok := a.acc.LocalpartOf(userID)
	if !ok {
		if a.cfg.Remote.Profile == nil || !validUserID(userID) {
			return "", "", mxerr.NotFound("Profile was not found")
		}
		dn, av, err := a.cfg.Remote.Profile(r.Context(), userID, field)
		if err != nil {
			return "", "", err
		}
		if dn != nil {
			displayName = *dn
		}
		if av != nil {
			avatarURL = *av
		}
		return displayName, avatarURL, nil
	}
	u, err := a.acc.User(lp)
	if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
		return "", "", mxerr.NotFound("Profile was not found")
	}
	if err != nil {
		return "", "", err
	}
	return u.DisplayName, u.AvatarURL, nil
}

// getProfile is GET /profile/{userId}.
func (a *API) getProfile(r *httpx.Request) (*profileResp, error) {
	dn, av, err := a.lookupProfile(r, "")
	if err != nil {
		return nil, err
	}
	return &profileResp{DisplayName: dn, AvatarURL: av}, nil
}

type displayNameBody struct {
	DisplayName *string `json:"displayname"`
}

// getDisplayName is GET /profile/{userId}/displayname; 404 when unset, as
// the spec says.
func (a *API) getDisplayName(r *httpx.Request) (*displayNameBody, error) {
	dn, _, err := a.lookupProfile(r, "displayname")
	if err != nil {
		return nil, err
	}
	if dn == "" {
		return nil, mxerr.NotFound("No display name set")
	}
	return &displayNameBody{DisplayName: &dn}, nil
}

type avatarURLBody struct {
	AvatarURL *string `json:"avatar_url"`
}

// getAvatarURL is GET /profile/{userId}/avatar_url; 404 when unset.
func (a *API) getAvatarURL(r *httpx.Request) (*avatarURLBody, error) {
	_, av, err := a.lookupProfile(r, "avatar_url")
	if err != nil {
		return nil, err
	}
	if av == "" {
		return nil, mxerr.NotFound("No avatar URL set")
	}
	return &avatarURLBody{AvatarURL: &av}, nil
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
