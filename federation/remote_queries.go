package federation

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// This file asks other servers on our clients' behalf: their users'
// profiles, their room aliases and their room directories.

// Profile is a user's public profile; a nil field is unset.
type Profile struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// QueryProfile asks userID's server for the user's profile, or only field
// ("displayname" or "avatar_url") when not "".
func (s *Service) QueryProfile(ctx context.Context, userID, field string) (*Profile, error) {
	server, ok := serverOf(userID)
	if !ok {
		return nil, mxerr.InvalidParam("Invalid user ID %q", userID)
	}
	q := url.Values{"user_id": {userID}}
	if field != "" {
		q.Set("field", field)
	}
	var p Profile
	if err := s.client.Call(ctx, "GET", server, "/_matrix/federation/v1/query/profile?"+q.Encode(), nil, &p); err != nil {
		return nil, remoteError(err, server, "Profile was not found")
	}
	return &p, nil
}

// QueryAlias asks a room alias's server which room it points to.
func (s *Service) QueryAlias(ctx context.Context, alias string) (*rooms.AliasTarget, error) {
	_, server, err := rooms.ParseAlias(alias)
	if err != nil {
		return nil, err
	}
	var t rooms.AliasTarget
	err = s.client.Call(ctx, "GET", server, "/_matrix/federation/v1/query/directory?"+url.Values{"room_alias": {alias}}.Encode(), nil, &t)
	if err != nil {
		return nil, remoteError(err, server, "Room alias "+alias+" not found")
	}
	if t.RoomID == "" {
		return nil, mxerr.NotFound("Room alias %s not found", alias)
	}
	if t.Servers == nil {
		t.Servers = []string{server}
	}
	return &t, nil
}

// PublicRooms asks q.Server for its room directory: a GET for a plain
// page, a POST when q filters it, as Synapse does.
func (s *Service) PublicRooms(ctx context.Context, q *rooms.PublicRoomsQuery) (*rooms.PublicRoomsPage, error) {
	server := q.Server
	if _, _, _, err := parseServerName(server); err != nil {
		return nil, mxerr.InvalidParam("Invalid server name %q", server)
	}
	var page rooms.PublicRoomsPage
	var err error
	if q.SearchTerm == "" && len(q.RoomTypes) == 0 {
		v := url.Values{}
		if q.Limit > 0 {
			v.Set("limit", strconv.Itoa(q.Limit))
		}
		if q.Since != "" {
			v.Set("since", q.Since)
		}
		if q.ThirdPartyInstanceID != "" {
			v.Set("third_party_instance_id", q.ThirdPartyInstanceID)
		}
		uri := "/_matrix/federation/v1/publicRooms"
		if len(v) > 0 {
			uri += "?" + v.Encode()
		}
		err = s.client.Call(ctx, "GET", server, uri, nil, &page)
	} else {
		in := &PublicRoomsRequest{Since: q.Since, ThirdPartyInstanceID: q.ThirdPartyInstanceID}
		if q.Limit > 0 {
			in.Limit = &q.Limit
		}
		in.Filter.GenericSearchTerm, in.Filter.RoomTypes = q.SearchTerm, q.RoomTypes
		err = s.client.Call(ctx, "POST", server, "/_matrix/federation/v1/publicRooms", in, &page)
	}
	if err != nil {
		return nil, remoteError(err, server, "Room directory of "+server+" not found")
	}
	if page.Chunk == nil {
		page.Chunk = []rooms.PublicRoom{}
	}
	return &page, nil
}

// remoteError turns the failure of a request to server into what our
// client is told: the remote's own 4xx Matrix error (404 as notFound),
// else 502, as Synapse answers for a server it could not ask. Internal
// details stay in the error chain for the log, not in the message.
func remoteError(err error, server, notFound string) error {
	var fe *Error
	if errors.As(err, &fe) {
		switch {
		case fe.Status == http.StatusNotFound:
			return mxerr.NotFound("%s", notFound)
		case fe.Status >= 400 && fe.Status < 500 && fe.Code != "" && fe.Status != http.StatusUnauthorized:
			return &mxerr.Error{Status: fe.Status, Code: fe.Code, Message: fe.Message}
		}
	}
	return &unreachable{server: server, cause: err}
}

// unreachable is a 502 Matrix error that keeps its cause for the log.
type unreachable struct {
	server string
	cause  error
}

func (u *unreachable) Error() string { return "federation: " + u.server + ": " + u.cause.Error() }

func (u *unreachable) Unwrap() error { return u.cause }

// As lets mxerr.As render it as 502 M_UNKNOWN.
func (u *unreachable) As(target any) bool {
	if p, ok := target.(**mxerr.Error); ok {
		*p = &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "Could not reach " + u.server}
		return true
	}
	return false
}

// serverOf returns the server name of a user ID.
func serverOf(userID string) (string, bool) {
	if len(userID) < 4 || userID[0] != '@' {
		return "", false
	}
	for i := 1; i < len(userID); i++ {
		if userID[i] == ':' {
			server := userID[i+1:]
			if _, _, _, err := parseServerName(server); err != nil || i == 1 {
				return "", false
			}
			return server, true
		}
	}
	return "", false
}
