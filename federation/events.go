package federation

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
)

// The spec's "Retrieving events" and "Backfilling and retrieving missing
// events": other servers reading a room's history. The room core decides
// what the requesting server may see (rooms.Service.Fed*).

func (s *Service) pduTxn(pdus []json.RawMessage) *pduTxn {
	return &pduTxn{Origin: s.cfg.ServerName, OriginServerTS: time.Now().UnixMilli(), PDUs: orEmpty(pdus)}
}

// getEvent is GET /_matrix/federation/v1/event/{eventId}.
func (s *Service) getEvent(r *httpx.Request) (*pduTxn, error) {
	ev, err := s.rooms.FedEvent(r.Origin, r.Param("eventId"))
	if err != nil {
		return nil, err
	}
	return s.pduTxn([]json.RawMessage{ev}), nil
}

func eventIDParam(r *httpx.Request) (string, error) {
	id := r.Query("event_id")
	if id == "" {
		return "", mxerr.MissingParam("Missing event_id")
	}
	return id, nil
}

// getState is GET /_matrix/federation/v1/state/{roomId}?event_id=: the
// state before the event and its auth chain.
func (s *Service) getState(r *httpx.Request) (*stateResp, error) {
	id, err := eventIDParam(r)
	if err != nil {
		return nil, err
	}
	state, chain, err := s.rooms.FedState(r.Origin, r.Param("roomId"), id)
	if err != nil {
		return nil, err
	}
	return &stateResp{AuthChain: orEmpty(chain), PDUs: orEmpty(state)}, nil
}

type stateIDsResp struct {
	AuthChainIDs []string `json:"auth_chain_ids"`
	PDUIDs       []string `json:"pdu_ids"`
}

// getStateIDs is GET /_matrix/federation/v1/state_ids/{roomId}?event_id=.
func (s *Service) getStateIDs(r *httpx.Request) (*stateIDsResp, error) {
	id, err := eventIDParam(r)
	if err != nil {
		return nil, err
	}
	state, chain, err := s.rooms.FedStateIDs(r.Origin, r.Param("roomId"), id)
	if err != nil {
		return nil, err
	}
	return &stateIDsResp{AuthChainIDs: orEmpty(chain), PDUIDs: orEmpty(state)}, nil
}

type eventAuthResp struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
}

// getEventAuth is GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (s *Service) getEventAuth(r *httpx.Request) (*eventAuthResp, error) {
	chain, err := s.rooms.FedEventAuth(r.Origin, r.Param("roomId"), r.Param("eventId"))
	if err != nil {
		return nil, err
	}
	return &eventAuthResp{AuthChain: orEmpty(chain)}, nil
}

// backfill is GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=.
// v may repeat (as Synapse sends it) or list IDs separated by commas (the
// spec's form style).
func (s *Service) backfill(r *httpx.Request) (*pduTxn, error) {
	_, rawQuery, _ := strings.Cut(r.RequestURI(), "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, mxerr.InvalidParam("Malformed query string")
	}
	var from []string
	for _, v := range q["v"] {
		for id := range strings.SplitSeq(v, ",") {
			if id != "" {
				from = append(from, id)
			}
		}
	}
	if len(from) == 0 {
		return nil, mxerr.MissingParam("Missing v")
	}
	if q.Get("limit") == "" {
		return nil, mxerr.MissingParam("Missing limit")
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 0 {
		return nil, mxerr.InvalidParam("limit must be a non-negative integer")
	}
	pdus, err := s.rooms.FedBackfill(r.Origin, r.Param("roomId"), from, limit)
	if err != nil {
		return nil, err
	}
	return s.pduTxn(pdus), nil
}

// getMissingEvents is POST /_matrix/federation/v1/get_missing_events/{roomId};
// a missing limit is 0, which the room core reads as its default.
func (s *Service) getMissingEvents(r *httpx.Request, in *missingEventsReq) (*missingEventsResp, error) {
	if in.LatestEvents == nil {
		return nil, mxerr.BadJSON("Missing latest_events")
	}
	evs, err := s.rooms.FedMissingEvents(r.Origin, r.Param("roomId"), in.EarliestEvents, in.LatestEvents, in.Limit, in.MinDepth)
	if err != nil {
		return nil, err
	}
	return &missingEventsResp{Events: orEmpty(evs)}, nil
}
