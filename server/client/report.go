package client

import (
	"hearth/server/httpx"
	"hearth/server/mxerr"
)

type reportReq struct {
	Reason string `json:"reason"`
	Score  *int   `json:"score"`
}

// reportEvent is POST /rooms/{roomId}/report/{eventId}.
func (a *API) reportEvent(r *httpx.Request, in *reportReq) (*httpx.Empty, error) {
	if in.Score != nil && (*in.Score < -100 || *in.Score > 0) {
		return nil, mxerr.InvalidParam("score must be between -100 and 0")
	}
	return &httpx.Empty{}, a.rooms.Report(r.Principal.UserID, r.Param("roomId"), r.Param("eventId"), in.Reason, in.Score)
}

// reportRoom is POST /rooms/{roomId}/report.
func (a *API) reportRoom(r *httpx.Request, in *reportReq) (*httpx.Empty, error) {
	return &httpx.Empty{}, a.rooms.Report(r.Principal.UserID, r.Param("roomId"), "", in.Reason, nil)
}
