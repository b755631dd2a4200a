package federation

import (
	"strconv"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// queryDirectory is GET /_matrix/federation/v1/query/directory: one of
// our room aliases, resolved to its room and the servers in it.
func (s *Service) queryDirectory(r *httpx.Request) (*rooms.AliasTarget, error) {
	alias := r.Query("room_alias")
	if alias == "" {
		return nil, mxerr.MissingParam("Missing room_alias")
	}
	_, server, err := rooms.ParseAlias(alias)
	if err != nil {
		return nil, err
	}
	if server != s.cfg.ServerName {
		return nil, mxerr.NotFound("Room alias %s is not an alias of this server", alias)
	}
	return s.rooms.ResolveAlias(alias)
}

// getPublicRooms is GET /_matrix/federation/v1/publicRooms: our own
// published rooms only, never those we know from other servers.
func (s *Service) getPublicRooms(r *httpx.Request) (*rooms.PublicRoomsPage, error) {
	q := &rooms.PublicRoomsQuery{Since: r.Query("since")}
	if v := r.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		q.Limit = n
	}
	if r.Query("include_all_networks") != "true" {
		q.ThirdPartyInstanceID = r.Query("third_party_instance_id")
	}
	return s.rooms.PublicRooms(q)
}

// PublicRoomsRequest is the body of POST /publicRooms, the same on the
// client and federation APIs.
type PublicRoomsRequest struct {
	Limit  *int   `json:"limit,omitempty"`
	Since  string `json:"since,omitempty"`
	Filter struct {
		GenericSearchTerm string    `json:"generic_search_term,omitempty"`
		RoomTypes         []*string `json:"room_types,omitempty"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string `json:"third_party_instance_id,omitempty"`
}

// postPublicRooms is POST /_matrix/federation/v1/publicRooms: our
// directory with a filter.
func (s *Service) postPublicRooms(r *httpx.Request, in *PublicRoomsRequest) (*rooms.PublicRoomsPage, error) {
	q := &rooms.PublicRoomsQuery{Since: in.Since, SearchTerm: in.Filter.GenericSearchTerm, RoomTypes: in.Filter.RoomTypes}
	if in.Limit != nil {
		if *in.Limit < 0 {
			return nil, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		q.Limit = *in.Limit
	}
	if !in.IncludeAllNetworks {
		q.ThirdPartyInstanceID = in.ThirdPartyInstanceID
	}
	return s.rooms.PublicRooms(q)
}

// hierarchy is GET /_matrix/federation/v1/hierarchy/{roomId}.
func (s *Service) hierarchy(r *httpx.Request) (*rooms.ServerHierarchy, error) {
	return s.rooms.HierarchyForServer(r.Origin, r.Param("roomId"), r.Query("suggested_only") == "true")
}

// timestampToEvent is GET /_matrix/federation/v1/timestamp_to_event/{roomId}.
func (s *Service) timestampToEvent(r *httpx.Request) (*rooms.EventAtTime, error) {
	ts, err := strconv.ParseInt(r.Query("ts"), 10, 64)
	if err != nil {
		return nil, mxerr.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := r.Query("dir")
	if dir != "f" && dir != "b" {
		return nil, mxerr.InvalidParam("dir must be f or b")
	}
	return s.rooms.EventNearForServer(r.Origin, r.Param("roomId"), ts, dir == "f")
}
