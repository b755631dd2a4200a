package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"hearth/server/pdu"
	"hearth/store"
)

// Remote is how the room core reaches other servers for what an incoming
// event refers to; the federation layer implements it.
type Remote interface {
	// EventAuth returns the auth chain of an event (/event_auth).
	EventAuth(ctx context.Context, server, roomID, eventID string) ([]json.RawMessage, error)
	// MissingEvents returns events between earliest and latest
	// (/get_missing_events).
	MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error)
	// State returns the state before an event and its auth chain (/state).
	State(ctx context.Context, server, roomID, eventID string) (state, authChain []json.RawMessage, err error)
	// StateIDs returns the IDs of the state before an event and of its
	// auth chain (/state_ids).
	StateIDs(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error)
	// Event returns one event (/event).
	Event(ctx context.Context, server, eventID string) (json.RawMessage, error)
	// Backfill returns events before from (/backfill).
	Backfill(ctx context.Context, server, roomID string, from []string, limit int) ([]json.RawMessage, error)
	// Hierarchy returns a space's summary and its children's, as server
	// describes them to us (/hierarchy).
	Hierarchy(ctx context.Context, server, roomID string, suggestedOnly bool) (*ServerHierarchy, error)
	// TimestampToEvent returns the event server has closest to ts: the
	// first at or after it when forward, else the last at or before it
	// (/timestamp_to_event).
	TimestampToEvent(ctx context.Context, server, roomID string, ts int64, forward bool) (*EventAtTime, error)
	// PolicySign asks a room's policy server to sign a PDU
	// (/_matrix/policy/v1/sign) and returns the signatures it answered
	// with, by server name and key ID. A refusal it answered with wraps
	// its Matrix error (status, errcode, message).
	PolicySign(ctx context.Context, server string, ev json.RawMessage) (map[string]map[string]string, error)
}

// ErrRejected wraps the refusal of a remote event: it failed its
// signatures, hashes, size or the auth rules.
var ErrRejected = errors.New("event rejected")

// ErrNotAllowed wraps the refusal of a remote event that was stored as
// rejected: it failed the auth rules, or its auth events did. The
// event is known and never served; its sender is answered as Synapse
// answers, without an error.
var ErrNotAllowed = fmt.Errorf("%w: not allowed", ErrRejected)

// ErrNotInRoom is an event for a room this server is not in.
var ErrNotInRoom = errors.New("this server is not in the room")

// SetFederation gives the room core its way to other servers and to their
// signing keys.
func (s *Service) SetFederation(r Remote, h Handshakes, keys pdu.KeyFunc) {
	s.remote, s.handshakes, s.keys = r, h, keys
}

// loaded is a stored event with its parsed form.
type loaded struct {
	rec *store.StoredEvent
	ev  *pdu.Event
}

// load returns a stored event of a room by ID, or store.ErrNotFound.
func (s *Service) load(tx *store.Tx, version, eventID string) (*loaded, error) {
	pos, err := tx.EventPos(eventID)
	if err != nil {
		return nil, err
	}
	rec, err := tx.Event(pos)
	if err != nil {
		return nil, err
	}
	ev, err := s.heads.event(tx, version, pos)
	if err != nil {
		return nil, err
	}
	return &loaded{rec: rec, ev: ev}, nil
}
