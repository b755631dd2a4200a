package server

import (
	"context"

	"hearth/server/client"
	"hearth/server/mxerr"
	"hearth/store"
)

// clientRemote is how the client API reaches other servers: through the
// federation service, or not at all when federation is off.
func (s *Server) clientRemote() client.Remote {
	f := s.federation
	if f == nil {
		return client.Remote{}
	}
	return client.Remote{
		Profile: func(ctx context.Context, userID, field string) (*string, *string, error) {
			p, err := f.QueryProfile(ctx, userID, field)
			if err != nil {
				return nil, nil, err
			}
			return p.DisplayName, p.AvatarURL, nil
		},
		Alias:       f.QueryAlias,
		PublicRooms: f.PublicRooms,
	}
}

// fetchRemoteMedia is the media repository's Remote: it fetches
// mxc://origin/mediaID over federation and stores it in the repository.
func (s *Server) fetchRemoteMedia(ctx context.Context, origin, mediaID string) (*store.Media, error) {
	if s.federation == nil {
		return nil, mxerr.NotFound("Remote media is not available: federation is off")
	}
	m, err := s.federation.FetchMedia(ctx, origin, mediaID, s.media.MaxUploadSize())
	if err != nil {
		return nil, err
	}
	defer m.Body.Close()
	return s.media.StoreRemote(origin, mediaID, m.ContentType, m.UploadName, m.Body)
}
