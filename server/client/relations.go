package client

import (
	"strconv"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// relationRoutes is the route table of the spec's "Redactions", "Event
// relationships" and "Threads" areas.
func (a *API) relationRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "PUT", Path: "/v3/rooms/{roomId}/redact/{eventId}/{txnId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.redact)},

		{Method: "GET", Path: "/v1/rooms/{roomId}/relations/{eventId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.relations)},
		{Method: "GET", Path: "/v1/rooms/{roomId}/relations/{eventId}/{relType}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.relations)},
		{Method: "GET", Path: "/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.relations)},
		{Method: "GET", Path: "/v1/rooms/{roomId}/threads", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.threads)},
	}
}

type redactReq struct {
	Reason string `json:"reason"`
}

// redact is PUT /rooms/{roomId}/redact/{eventId}/{txnId}: idempotent per
// device, event and transaction ID.
func (a *API) redact(r *httpx.Request, in *redactReq) (*eventIDResp, error) {
	p := r.Principal
	id, err := a.rooms.Redact(r.Param("roomId"), &rooms.Redaction{
		Sender: p.UserID, EventID: r.Param("eventId"), Reason: in.Reason,
		Txn: rooms.RedactTxn(p.Localpart, p.DeviceID, r.Param("eventId"), r.Param("txnId")),
	})
	if err != nil {
		return nil, err
	}
	return &eventIDResp{EventID: id}, nil
}

// Page sizes of /relations and /threads: Synapse's default, and a bound
// that keeps one response small.
const (
	defaultRelationsLimit = 5
	maxRelationsLimit     = 1000
	maxThreadsLimit       = 100
)

// pageLimit reads the limit query parameter: def when absent, at most
// most, and at least 1.
func pageLimit(r *httpx.Request, def, most int) (int, error) {
	v := r.Query("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, mxerr.InvalidParam("limit must be a positive integer")
	}
	return min(n, most), nil
}

// relations is GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (a *API) relations(r *httpx.Request) (*rooms.RelationsPage, error) {
	limit, err := pageLimit(r, defaultRelationsLimit, maxRelationsLimit)
	if err != nil {
		return nil, err
	}
	q := &rooms.RelationsQuery{
		EventID: r.Param("eventId"), RelType: r.Param("relType"), EventType: r.Param("eventType"),
		From: r.Query("from"), To: r.Query("to"), Limit: limit,
	}
	switch r.Query("dir") {
	case "", "b":
	case "f":
		q.Forward = true
	default:
		return nil, mxerr.InvalidParam("dir must be b or f")
	}
	switch r.Query("recurse") {
	case "", "false":
	case "true":
		q.Recurse = true
	default:
		return nil, mxerr.InvalidParam("recurse must be true or false")
	}
	return a.rooms.Relations(r.Principal.UserID, r.Principal.DeviceID, r.Param("roomId"), q)
}

// threads is GET /v1/rooms/{roomId}/threads.
func (a *API) threads(r *httpx.Request) (*rooms.ThreadsPage, error) {
	limit, err := pageLimit(r, defaultRelationsLimit, maxThreadsLimit)
	if err != nil {
		return nil, err
	}
	var participated bool
	switch r.Query("include") {
	case "", "all":
	case "participated":
		participated = true
	default:
		return nil, mxerr.InvalidParam("include must be all or participated")
	}
	return a.rooms.Threads(r.Principal.UserID, r.Principal.DeviceID, r.Param("roomId"), r.Query("from"), participated, limit)
}
