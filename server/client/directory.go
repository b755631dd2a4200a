package client

import (
	"context"
	"strconv"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// directoryRoutes is the route table of the spec's "Room aliases" and
// "Published room directory" areas.
func (a *API) directoryRoutes() []httpx.Route {
	return []httpx.Route{
		// Room aliases.
		{Method: "GET", Path: "/v3/directory/room/{roomAlias}", Handler: httpx.NoBody(a.getAlias)},
		{Method: "PUT", Path: "/v3/directory/room/{roomAlias}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putAlias)},
		{Method: "DELETE", Path: "/v3/directory/room/{roomAlias}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.deleteAlias)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/aliases", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.roomAliases)},

		// Published room directory. Reading it needs no account, as the
		// spec has it; searching it (POST) does.
		{Method: "GET", Path: "/v3/directory/list/room/{roomId}", Handler: httpx.NoBody(a.getVisibility)},
		{Method: "PUT", Path: "/v3/directory/list/room/{roomId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putVisibility)},
		{Method: "GET", Path: "/v3/publicRooms", Auth: httpx.OptionalAuth, Handler: httpx.NoBody(a.getPublicRooms)},

		// Spaces.
		{Method: "GET", Path: "/v1/rooms/{roomId}/hierarchy", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.hierarchy)},
		{Method: "GET", Path: "/v1/room_summary/{roomIdOrAlias}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.roomSummary)},
		{Method: "POST", Path: "/v3/publicRooms", Auth: httpx.UserAuth, Handler: httpx.JSON(a.postPublicRooms)},
	}
}

// roomIDOf resolves the {roomIdOrAlias} of /join and /knock: a room
// alias to the room it points to, anything else as it is.
func (a *API) roomIDOf(r *httpx.Request, idOrAlias string) (string, error) {
	t, err := a.roomTarget(r, idOrAlias)
	if err != nil {
		return "", err
	}
	return t.RoomID, nil
}

// roomTarget resolves a room ID or alias to the room ID and, for an
// alias, the servers to join it through.
func (a *API) roomTarget(r *httpx.Request, idOrAlias string) (*rooms.AliasTarget, error) {
	if !strings.HasPrefix(idOrAlias, "#") {
		return &rooms.AliasTarget{RoomID: idOrAlias}, nil
	}
	return a.ResolveAlias(r.Context(), idOrAlias)
}

// ResolveAlias resolves a room alias: ours from the store, another
// server's by asking it. The servers it returns are where a join goes.
func (a *API) ResolveAlias(ctx context.Context, alias string) (*rooms.AliasTarget, error) {
	_, server, err := rooms.ParseAlias(alias)
	if err != nil {
		return nil, err
	}
	if server == a.acc.ServerName() {
		return a.rooms.ResolveAlias(alias)
	}
	if a.cfg.Remote.Alias == nil {
		return nil, mxerr.NotFound("Room alias %s is on another server, and federation is off", alias)
	}
	return a.cfg.Remote.Alias(ctx, alias)
}

// getAlias is GET /directory/room/{roomAlias}.
func (a *API) getAlias(r *httpx.Request) (*rooms.AliasTarget, error) {
	return a.ResolveAlias(r.Context(), r.Param("roomAlias"))
}

type putAliasReq struct {
	RoomID string `json:"room_id"`
}

// putAlias is PUT /directory/room/{roomAlias}.
func (a *API) putAlias(r *httpx.Request, in *putAliasReq) (*httpx.Empty, error) {
	if in.RoomID == "" {
		return nil, mxerr.MissingParam("Missing room_id")
	}
	return &httpx.Empty{}, a.rooms.CreateAlias(r.Principal.UserID, r.Principal.Admin, r.Param("roomAlias"), in.RoomID)
}

// deleteAlias is DELETE /directory/room/{roomAlias}.
func (a *API) deleteAlias(r *httpx.Request) (*httpx.Empty, error) {
	return &httpx.Empty{}, a.rooms.DeleteAlias(r.Principal.UserID, r.Principal.Admin, r.Param("roomAlias"))
}

type aliasesResp struct {
	Aliases []string `json:"aliases"`
}

// roomAliases is GET /rooms/{roomId}/aliases.
func (a *API) roomAliases(r *httpx.Request) (*aliasesResp, error) {
	list, err := a.rooms.LocalAliases(r.Principal.UserID, r.Principal.Admin, r.Param("roomId"))
	if err != nil {
		return nil, err
	}
	return &aliasesResp{Aliases: list}, nil
}

type visibilityBody struct {
	Visibility string `json:"visibility"`
}

// getVisibility is GET /directory/list/room/{roomId}.
func (a *API) getVisibility(r *httpx.Request) (*visibilityBody, error) {
	v, err := a.rooms.Visibility(r.Param("roomId"))
	if err != nil {
		return nil, err
	}
	return &visibilityBody{Visibility: v}, nil
}

// putVisibility is PUT /directory/list/room/{roomId}; the spec's default
// visibility is public.
func (a *API) putVisibility(r *httpx.Request, in *visibilityBody) (*httpx.Empty, error) {
	switch in.Visibility {
	case "", "public", "private":
	default:
		return nil, mxerr.InvalidParam("visibility must be public or private")
	}
	return &httpx.Empty{}, a.rooms.SetVisibility(r.Principal.UserID, r.Principal.Admin, r.Param("roomId"), in.Visibility != "private")
}

// getPublicRooms is GET /publicRooms.
func (a *API) getPublicRooms(r *httpx.Request) (*rooms.PublicRoomsPage, error) {
	q := &rooms.PublicRoomsQuery{Server: r.Query("server"), Since: r.Query("since")}
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
	return a.publicRooms(r, q)
}

// publicRooms lists our directory, or asks the server q names for its.
func (a *API) publicRooms(r *httpx.Request, q *rooms.PublicRoomsQuery) (*rooms.PublicRoomsPage, error) {
	if q.Server == "" || q.Server == a.acc.ServerName() {
		return a.rooms.PublicRooms(q)
	}
	if a.cfg.Remote.PublicRooms == nil {
		return nil, mxerr.NotFound("Cannot list the room directory of %s: federation is off", q.Server)
	}
	return a.cfg.Remote.PublicRooms(r.Context(), q)
}

type publicRoomsReq struct {
	Limit  *int   `json:"limit"`
	Since  string `json:"since"`
	Filter struct {
		GenericSearchTerm string    `json:"generic_search_term"`
		RoomTypes         []*string `json:"room_types"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks"`
	ThirdPartyInstanceID string `json:"third_party_instance_id"`
}

// postPublicRooms is POST /publicRooms: the directory with a filter.
func (a *API) postPublicRooms(r *httpx.Request, in *publicRoomsReq) (*rooms.PublicRoomsPage, error) {
	q := &rooms.PublicRoomsQuery{
		Server: r.Query("server"), Since: in.Since,
		SearchTerm: in.Filter.GenericSearchTerm, RoomTypes: in.Filter.RoomTypes,
	}
	if in.Limit != nil {
		if *in.Limit < 0 {
			return nil, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		q.Limit = *in.Limit
	}
	if !in.IncludeAllNetworks {
		q.ThirdPartyInstanceID = in.ThirdPartyInstanceID
	}
	return a.publicRooms(r, q)
}

// roomSummary is GET /_matrix/client/v1/room_summary/{roomIdOrAlias}:
// an alias is resolved first, and its servers are asked after via.
func (a *API) roomSummary(r *httpx.Request) (*rooms.RoomPreview, error) {
	t, err := a.roomTarget(r, r.Param("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	via := append(r.QueryAll("via"), t.Servers...)
	return a.rooms.Preview(r.Context(), r.Principal.UserID, t.RoomID, via)
}

// hierarchy is GET /_matrix/client/v1/rooms/{roomId}/hierarchy.
func (a *API) hierarchy(r *httpx.Request) (*rooms.HierarchyPage, error) {
	q := rooms.HierarchyQuery{MaxDepth: -1, From: r.Query("from"), SuggestedOnly: r.Query("suggested_only") == "true"}
	for _, p := range []struct {
		name string
		into *int
	}{{"limit", &q.Limit}, {"max_depth", &q.MaxDepth}} {
		if v := r.Query(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, mxerr.InvalidParam("%s must be a non-negative integer", p.name)
			}
			*p.into = n
		}
	}
	return a.rooms.Hierarchy(r.Context(), r.Principal.UserID, r.Param("roomId"), q)
}
