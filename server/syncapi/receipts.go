package syncapi

import (
	"encoding/json"

	"hearth/server/httpx"
	"hearth/server/mxerr"
)

type receiptReq struct {
	ThreadID string `json:"thread_id"`
}

// postReceipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
func (a *API) postReceipt(r *httpx.Request, in *receiptReq) (*httpx.Empty, error) {
	switch typ := r.Param("receiptType"); typ {
	case "m.read", "m.read.private":
		return &httpx.Empty{}, a.setReceipt(r, typ, r.Param("eventId"), in.ThreadID)
	case "m.fully_read":
		if in.ThreadID != "" {
			return nil, mxerr.BadJSON("m.fully_read cannot be threaded")
		}
		return &httpx.Empty{}, a.setFullyRead(r, r.Param("eventId"))
	default:
		return nil, mxerr.InvalidParam("Unknown receipt type %q", typ)
	}
}

type readMarkersReq struct {
	FullyRead   string `json:"m.fully_read"`
	Read        string `json:"m.read"`
	ReadPrivate string `json:"m.read.private"`
}

// postReadMarkers is POST /rooms/{roomId}/read_markers.
func (a *API) postReadMarkers(r *httpx.Request, in *readMarkersReq) (*httpx.Empty, error) {
	if in.FullyRead != "" {
		if err := a.setFullyRead(r, in.FullyRead); err != nil {
			return nil, err
		}
	}
	for typ, id := range map[string]string{"m.read": in.Read, "m.read.private": in.ReadPrivate} {
		if id != "" {
			if err := a.setReceipt(r, typ, id, ""); err != nil {
				return nil, err
			}
		}
	}
	return &httpx.Empty{}, nil
}

// setReceipt records the caller's receipt; a public one goes to the
// other servers in the room too.
func (a *API) setReceipt(r *httpx.Request, typ, eventID, threadID string) error {
	if err := a.rooms.SetReceipt(r.Principal.UserID, r.Param("roomId"), typ, eventID, threadID); err != nil {
		return err
	}
	if typ == "m.read" {
		a.federateReceipt(r.Param("roomId"), r.Principal.UserID, eventID, threadID)
	}
	return nil
}

// setFullyRead moves the user's read marker (room account data
// m.fully_read) to eventID, which must be an event of the room they may
// see.
func (a *API) setFullyRead(r *httpx.Request, eventID string) error {
	if _, err := a.rooms.Event(r.Principal.UserID, r.Principal.DeviceID, r.Param("roomId"), eventID); err != nil {
		return err
	}
	content, _ := json.Marshal(map[string]string{"event_id": eventID})
	return a.setAccountData(r.Principal, r.Param("roomId"), "m.fully_read", func(json.RawMessage) (json.RawMessage, error) { return content, nil })
}
