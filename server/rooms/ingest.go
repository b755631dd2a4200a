package rooms

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"hearth/server/pdu"
	"hearth/store"
)

// The ingest pipeline takes an event another server sent (a PDU of a
// transaction, a send_join, send_leave or send_knock) through the
// Server-Server API's checks ("Checks performed on receipt of a PDU"):
//
//  1. parse: room version, canonical JSON, content hash (redacting on a
//     mismatch), size (ingest.go);
//  2. signatures of the servers that must have signed (ingest.go);
//  3. prev events: fetched when missing, the state before the event
//     computed, by state resolution where they fork (ingest_state.go);
//  4. auth events: fetched when missing, the event checked against them
//     (ingest_auth.go);
//  5. the event checked against the state before it (rejected if it
//     fails) and the room's current state (soft-failed if it fails), and
//     persisted with its state (ingest_store.go); in a room that uses a
//     policy server, an event it has not signed is soft-failed too
//     (policy.go).
//
// The prev events come first, as Synapse takes them: the state before
// the event usually holds its auth events, so a peer need not answer
// /event_auth for them, and that state is known even when the event is
// rejected.
//
// A rejected event is kept (flagged, never served) so it is not fetched
// and judged again; it never becomes part of any state. Its state before
// is kept with it where known: an event that follows a rejected one has
// the state after it, which is the state before it.

// maxFetchDepth bounds how deep missing prev events are chased.
const maxFetchDepth = 1

// ReceivePDU takes a PDU origin sent us through the pipeline. It returns
// the event ID; an error wrapping ErrRejected when the event was refused,
// ErrNotInRoom for a room we are not in.
func (s *Service) ReceivePDU(ctx context.Context, origin string, js []byte) (string, error) {
	room, ev, err := s.admitPDU(ctx, origin, js)
	if ev == nil || err != nil {
		return idOf(ev), err
	}
	unlock := s.lockRoom(room.RoomID)
	defer unlock()
	return ev.ID(), s.ingest(ctx, origin, room.NID, ev, 0)
}

// admitPDU runs the checks a PDU passes before its room's lock: a room we
// are in, steps 1 and 2, the room's server ACL. An event that a room we
// are not in may still concern (an invite's rescission) is taken there
// and comes back with a nil room.
func (s *Service) admitPDU(ctx context.Context, origin string, js []byte) (*store.Room, *pdu.Event, error) {
	roomID := pdu.RoomIDOf(js)
	var room *store.Room
	err := s.store.View(func(tx *store.Tx) (err error) {
		room, err = tx.RoomByID(roomID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNotInRoom
	}
	if err != nil {
		return nil, nil, err
	}
	ev, err := s.parseRemote(ctx, room.Version, js)
	if err != nil {
		return nil, nil, err
	}
	// Only a resident server holds the state an event is checked
	// against; events that arrive while a join is under way are fetched
	// again as missing events once it is done.
	if ok, err := s.Resident(roomID); err != nil || !ok {
		if err == nil {
			if done, err := s.receiveRescission(room, ev); done || err != nil {
				return nil, ev, err
			}
		}
		return nil, ev, ErrNotInRoom
	}
	if !s.ServerAllowed(roomID, origin) || !s.ServerAllowed(roomID, ev.Origin()) {
		return nil, ev, fmt.Errorf("%w: the room's server ACL denies the server", ErrRejected)
	}
	return room, ev, nil
}

func idOf(ev *pdu.Event) string {
	if ev == nil {
		return ""
	}
	return ev.ID()
}

// parseRemote parses and verifies a remote event's JSON: steps 1 and 2.
func (s *Service) parseRemote(ctx context.Context, version string, js []byte) (*pdu.Event, error) {
	if len(js) > MaxEventSize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrRejected, MaxEventSize)
	}
	ev, err := pdu.ParseUntrusted(version, slices.Clone(js)) // never a request buffer
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if s.keys == nil {
		return nil, fmt.Errorf("%w: no federation", ErrRejected)
	}
	if err := pdu.VerifySignatures(ctx, ev, s.keys); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	return ev, nil
}

// ingest runs steps 3 to 5 for a parsed, verified event of the room
// roomNID; the caller holds the room's lock. depth counts how deep in a
// chase for missing prev events this is.
func (s *Service) ingest(ctx context.Context, origin string, roomNID uint64, ev *pdu.Event, depth int) error {
	var room *store.Room
	var known *store.StoredEvent
	err := s.store.View(func(tx *store.Tx) (err error) {
		if room, err = tx.RoomByNID(roomNID); err != nil {
			return err
		}
		known, _ = tx.EventByID(ev.ID())
		return nil
	})
	switch {
	case err != nil:
		return err
	case known != nil && known.Flags&store.FlagRejected != 0:
		return fmt.Errorf("%w: rejected before", ErrNotAllowed)
	case known != nil && known.Flags&store.FlagOutlier == 0:
		return nil // in the timeline already
	}
	// Unknown, or known only as an outlier (an auth or state event, a
	// soft-failed one): it goes through the pipeline.
	if ev.RoomID() != room.RoomID {
		return fmt.Errorf("%w: event of room %s, not %s", ErrRejected, ev.RoomID(), room.RoomID)
	}
	before, err := s.stateBefore(ctx, origin, room, ev, depth)
	if err != nil {
		return err
	}
	if err := s.checkAuthEvents(ctx, origin, room, ev, before); err != nil {
		return err
	}
	ev, policyRefusal, err := s.policyCheck(ctx, room, ev)
	if err != nil {
		return err
	}
	relay, _ := ctx.Value(relayKey{}).(string)
	return s.persistRemote(room, ev, before, relay == ev.ID(), policyRefusal)
}

// relayKey marks, in a context, the ID of the event an ingest is to
// queue for the room's other servers once accepted: a membership event
// another server sent us through send_join, send_leave or send_knock,
// which only we hand on.
type relayKey struct{}

// reject stores ev as rejected (once), with the state before it when
// known (nil: unknown), and returns the refusal.
func (s *Service) reject(room *store.Room, ev *pdu.Event, before map[store.StateKey]uint64, why error) error {
	err := s.store.Update(func(tx *store.Tx) error {
		snap, err := rejectedSnapshot(tx, room, before)
		if err != nil {
			return err
		}
		_, err = tx.AddOutlier(room.NID, ev.ID(), ev.JSON(), store.FlagRejected, snap)
		return err
	})
	if err != nil {
		return err
	}
	s.log.Info("federation: event rejected", "event_id", ev.ID(), "room", room.RoomID, "sender", ev.Sender(), "why", why)
	return fmt.Errorf("%w: %v", ErrNotAllowed, why)
}

// rejectedSnapshot stores the state before a rejected event, nil for
// unknown (snapshot 0), so that the events after it have their state.
func rejectedSnapshot(tx *store.Tx, room *store.Room, before map[store.StateKey]uint64) (uint64, error) {
	if len(before) == 0 {
		return 0, nil
	}
	r, err := tx.RoomByNID(room.NID)
	if err != nil {
		return 0, err
	}
	return tx.NewSnapshot(before, r.CurrentSnap)
}

// stateEvents returns the events of a state map that the auth rules need
// for ev, the create event always among them.
func (s *Service) stateEvents(tx *store.Tx, room *store.Room, state map[store.StateKey]uint64, ev *pdu.Event) ([]*pdu.Event, error) {
	needed := append(pdu.AuthStateNeededFor(ev), pdu.StateKey{Type: "m.room.create"})
	var out []*pdu.Event
	for _, sk := range needed {
		pos, ok := state[store.StateKey{Type: sk.Type, Key: sk.StateKey}]
		if !ok {
			continue
		}
		e, err := s.heads.event(tx, room.Version, pos)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(o *pdu.Event) bool { return o.ID() == e.ID() }) {
			out = append(out, e)
		}
	}
	return out, nil
}
