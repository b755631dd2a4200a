package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"hearth/server/rooms"
)

// The room core's way to other servers: fetching the events and state an
// incoming event refers to. A refusal comes back as an *Error.

var _ rooms.Remote = (*Service)(nil)

// EventAuth returns the auth chain of an event from server
// (GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}).
func (s *Service) EventAuth(ctx context.Context, server, roomID, eventID string) ([]json.RawMessage, error) {
	var resp struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	uri := "/_matrix/federation/v1/event_auth/" + url.PathEscape(roomID) + "/" + url.PathEscape(eventID)
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, fmt.Errorf("event_auth of %s from %s: %w", eventID, server, err)
	}
	return resp.AuthChain, nil
}

// missingEventsReq is the body of POST /get_missing_events.
type missingEventsReq struct {
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
	Limit          int      `json:"limit"`
	MinDepth       int64    `json:"min_depth"`
}

type missingEventsResp struct {
	Events []json.RawMessage `json:"events"`
}

// MissingEvents returns events of a room from server that come before
// latest and after earliest
// (POST /_matrix/federation/v1/get_missing_events/{roomId}).
func (s *Service) MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error) {
	in := &missingEventsReq{EarliestEvents: orEmpty(earliest), LatestEvents: orEmpty(latest), Limit: limit}
	var resp missingEventsResp
	uri := "/_matrix/federation/v1/get_missing_events/" + url.PathEscape(roomID)
	if err := s.client.Call(ctx, "POST", server, uri, in, &resp); err != nil {
		return nil, fmt.Errorf("get_missing_events in %s from %s: %w", roomID, server, err)
	}
	return resp.Events, nil
}

// stateResp is the response of GET /state.
type stateResp struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
	PDUs      []json.RawMessage `json:"pdus"`
}

// State returns the state of a room before an event, and its auth chain,
// from server (GET /_matrix/federation/v1/state/{roomId}?event_id=).
func (s *Service) State(ctx context.Context, server, roomID, eventID string) (state, authChain []json.RawMessage, err error) {
	var resp stateResp
	uri := "/_matrix/federation/v1/state/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape(eventID)
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, nil, fmt.Errorf("state at %s from %s: %w", eventID, server, err)
	}
	return resp.PDUs, resp.AuthChain, nil
}

// StateIDs returns the IDs of the state of a room before an event, and
// of its auth chain, from server
// (GET /_matrix/federation/v1/state_ids/{roomId}?event_id=).
func (s *Service) StateIDs(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error) {
	var resp stateIDsResp
	uri := "/_matrix/federation/v1/state_ids/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape(eventID)
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, nil, fmt.Errorf("state_ids at %s from %s: %w", eventID, server, err)
	}
	return resp.PDUIDs, resp.AuthChainIDs, nil
}

// pduTxn is the transaction-shaped response of GET /event and /backfill.
type pduTxn struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

// Event returns one event from server
// (GET /_matrix/federation/v1/event/{eventId}).
func (s *Service) Event(ctx context.Context, server, eventID string) (json.RawMessage, error) {
	var resp pduTxn
	uri := "/_matrix/federation/v1/event/" + url.PathEscape(eventID)
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, fmt.Errorf("event %s from %s: %w", eventID, server, err)
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("event %s from %s: %d PDUs in the response, want 1", eventID, server, len(resp.PDUs))
	}
	return resp.PDUs[0], nil
}

// orEmpty returns s, or an empty slice for nil, so it marshals as [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Backfill returns up to limit events of a room from server, from the
// events from back through their ancestors
// (GET /_matrix/federation/v1/backfill/{roomId}).
func (s *Service) Backfill(ctx context.Context, server, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	q := url.Values{"v": from, "limit": {strconv.Itoa(limit)}}
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	uri := "/_matrix/federation/v1/backfill/" + url.PathEscape(roomID) + "?" + q.Encode()
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, fmt.Errorf("backfill of %s from %s: %w", roomID, server, err)
	}
	return resp.PDUs, nil
}

// Hierarchy returns a space's summary and its direct children's from
// server (GET /_matrix/federation/v1/hierarchy/{roomId}).
func (s *Service) Hierarchy(ctx context.Context, server, roomID string, suggestedOnly bool) (*rooms.ServerHierarchy, error) {
	var resp rooms.ServerHierarchy
	uri := "/_matrix/federation/v1/hierarchy/" + url.PathEscape(roomID) + "?suggested_only=" + strconv.FormatBool(suggestedOnly)
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, fmt.Errorf("hierarchy of %s from %s: %w", roomID, server, err)
	}
	return &resp, nil
}

// TimestampToEvent returns the event of a room server has closest to ts
// (GET /_matrix/federation/v1/timestamp_to_event/{roomId}).
func (s *Service) TimestampToEvent(ctx context.Context, server, roomID string, ts int64, forward bool) (*rooms.EventAtTime, error) {
	dir := "b"
	if forward {
		dir = "f"
	}
	var resp rooms.EventAtTime
	uri := "/_matrix/federation/v1/timestamp_to_event/" + url.PathEscape(roomID) + "?ts=" + strconv.FormatInt(ts, 10) + "&dir=" + dir
	if err := s.client.Call(ctx, "GET", server, uri, nil, &resp); err != nil {
		return nil, fmt.Errorf("timestamp_to_event in %s from %s: %w", roomID, server, err)
	}
	if resp.EventID == "" {
		return nil, fmt.Errorf("timestamp_to_event in %s from %s: no event_id", roomID, server)
	}
	return &resp, nil
}
