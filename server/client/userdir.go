package client

import (
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

type userDirReq struct {
	SearchTerm *string `json:"search_term"`
	Limit      *int    `json:"limit"`
}

type userDirResp struct {
	Results []rooms.DirectoryUser `json:"results"`
	Limited bool                  `json:"limited"`
}

// searchUsers is POST /user_directory/search.
func (a *API) searchUsers(r *httpx.Request, in *userDirReq) (*userDirResp, error) {
	if in.SearchTerm == nil {
		return nil, mxerr.MissingParam("Missing search_term")
	}
	limit := 10
	if in.Limit != nil {
		if *in.Limit < 0 {
			return nil, mxerr.InvalidParam("limit must not be negative")
		}
		limit = min(*in.Limit, 100)
	}
	res, limited, err := a.rooms.SearchUsers(r.Principal.UserID, *in.SearchTerm, limit)
	if err != nil {
		return nil, err
	}
	return &userDirResp{Results: res, Limited: limited}, nil
}
