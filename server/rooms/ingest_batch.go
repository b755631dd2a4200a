package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"hearth/server/pdu"
	"hearth/store"
)

// PDUResult is what became of one PDU of ReceivePDUs: its event ID ("" if
// it has none to answer under: unparseable, or of a room we are not in)
// and the error ReceivePDU would have returned for it.
type PDUResult struct {
	ID  string
	Err error
}

// ReceivePDUs takes PDUs of one room (as pdu.RoomIDOf reads them) that
// origin sent in one transaction, in the order sent, through the pipeline
// as ReceivePDU takes each. Those
// that need nothing from other servers (every prev event with its state
// after it stored, every auth event stored, by then or earlier in the
// batch) are checked and stored in one write transaction, so they share
// its commit instead of waiting for one each; the others go through the
// pipeline one at a time, fetching what they lack.
func (s *Service) ReceivePDUs(ctx context.Context, origin string, raws []json.RawMessage) []PDUResult {
	out := make([]PDUResult, len(raws))
	var room *store.Room
	var evs []*pdu.Event
	var at []int // evs[i] is raws[at[i]]
	for i, raw := range raws {
		r, ev, err := s.admitPDU(ctx, origin, raw)
		out[i] = PDUResult{ID: idOf(ev), Err: err}
		if ev == nil || err != nil {
			continue
		}
		room = r
		evs, at = append(evs, ev), append(at, i)
	}
	if room == nil {
		return out
	}
	unlock := s.lockRoom(room.RoomID)
	defer unlock()
	for i, err := range s.ingestAll(ctx, origin, room, evs, 0) {
		out[at[i]].Err = err
	}
	return out
}

// ingestAll runs evs, of room, through the pipeline in order, as ingest
// runs each, and returns each one's outcome: runs of those that need
// nothing from other servers are stored together (ingestReady). The
// caller holds the room's lock; depth is as ingest's.
func (s *Service) ingestAll(ctx context.Context, origin string, room *store.Room, evs []*pdu.Event, depth int) []error {
	out := make([]error, len(evs))
	for i := 0; i < len(evs); {
		// A look first, so that an event that needs more costs no
		// empty commit.
		var errs []error
		ready := false
		err := s.store.View(func(tx *store.Tx) (err error) {
			_, _, ready, err = s.readyTx(tx, room, evs[i])
			return err
		})
		if err == nil && ready {
			if errs, err = s.ingestReady(room, evs[i:]); err != nil {
				s.log.Warn("federation: storing events together failed; taking them one by one", "room", room.RoomID, "err", err)
				errs = nil
			}
		}
		copy(out[i:], errs)
		i += len(errs)
		if len(errs) == 0 { // evs[i] needs other servers, or a closer look
			out[i] = s.ingest(ctx, origin, room.NID, evs[i], depth)
			i++
		}
	}
	return out
}

// ingestReady checks and stores, in one write transaction, the events
// at the start of evs that need nothing from other servers, and returns
// their outcomes: one per event taken, none when the first needs more.
// An event already stored in any form is left to ingest, which knows
// what to do with each.
func (s *Service) ingestReady(room *store.Room, evs []*pdu.Event) ([]error, error) {
	type taken struct {
		ev      *pdu.Event
		p       persisted
		authErr error // refused by its auth events
	}
	var done []taken
	err := s.store.Update(func(tx *store.Tx) error {
		done = done[:0]
		for _, ev := range evs {
			before, auth, ok, err := s.readyTx(tx, room, ev)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if refusal := pdu.Allowed(ev, auth); refusal != nil {
				snap, err := rejectedSnapshot(tx, room, before)
				if err == nil {
					_, err = tx.AddOutlier(room.NID, ev.ID(), ev.JSON(), store.FlagRejected, snap)
				}
				if err != nil {
					return err
				}
				done = append(done, taken{ev: ev, authErr: refusal})
				continue
			}
			ok, err = s.policySatisfiedTx(tx, room, ev)
			if err != nil {
				return err
			}
			if !ok {
				break // the policy server may have to be asked: ingest takes it
			}
			p, err := s.persistTx(tx, room.NID, ev, before, false, nil)
			if err != nil {
				return err
			}
			done = append(done, taken{ev: ev, p: p})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(done))
	for i, t := range done {
		if t.authErr != nil {
			why := fmt.Errorf("not allowed by its auth events: %w", t.authErr)
			s.log.Info("federation: event rejected", "event_id", t.ev.ID(), "room", room.RoomID, "sender", t.ev.Sender(), "why", why)
			errs[i] = fmt.Errorf("%w: %v", ErrNotAllowed, why)
			continue
		}
		errs[i] = s.persistedDone(room, t.ev, t.p)
	}
	return errs, nil
}

// readyTx reports whether ev needs nothing from other servers, and if so
// returns the state before it (resolved over its prev events) and its
// auth events, as stateBefore and checkAuthEvents would find them.
func (s *Service) readyTx(tx *store.Tx, room *store.Room, ev *pdu.Event) (before map[store.StateKey]uint64, auth []*pdu.Event, ok bool, err error) {
	if _, err := tx.EventByID(ev.ID()); !errors.Is(err, store.ErrNotFound) {
		return nil, nil, false, err
	}
	if ev.RoomID() != room.RoomID {
		return nil, nil, false, nil
	}
	var sets []map[store.StateKey]uint64
	for _, id := range ev.PrevEventIDs() {
		l, err := s.load(tx, room.Version, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, false, nil
		}
		if err != nil {
			return nil, nil, false, err
		}
		if !stateAfterKnown(l.rec) {
			return nil, nil, false, nil
		}
		st, err := stateAfter(tx, l)
		if err != nil {
			return nil, nil, false, err
		}
		sets = append(sets, st)
	}
	ids := ev.AuthEventIDs()
	if c := createEventID(room); c != "" && ev.ID() != c && !slices.Contains(ids, c) {
		ids = append(ids, c)
	}
	for _, id := range ids {
		l, err := s.load(tx, room.Version, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, false, nil
		}
		if err != nil {
			return nil, nil, false, err
		}
		if l.rec.Flags&store.FlagRejected != 0 {
			return nil, nil, false, nil // ingest rejects it, saying why
		}
		auth = append(auth, l.ev)
	}
	if before, err = s.resolve(tx, room, sets); err != nil {
		return nil, nil, false, err
	}
	return before, auth, true, nil
}
