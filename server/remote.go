package server

import (
	"context"

	"hearth/server/client"
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
