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

// maxMissingEvents is how many missing events one get_missing_events
// asks for.
const maxMissingEvents = 20

// stateBefore is step 4: the state before ev. When ev's prev events are
// unknown they are fetched from origin (get_missing_events, up to
// maxFetchDepth deep); where a gap remains, the state at the missing
// event is asked for (/state). Where the prev events' states differ they
// are resolved. ev must pass the auth rules against the result.
func (s *Service) stateBefore(ctx context.Context, origin string, room *store.Room, ev *pdu.Event, depth int) (map[store.StateKey]uint64, error) {
	prevs := ev.PrevEventIDs()
	missing, err := s.missingPrevs(prevs)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 && depth < maxFetchDepth && s.remote != nil {
		s.fetchMissing(ctx, origin, room, ev, depth)
		if missing, err = s.missingPrevs(prevs); err != nil {
			return nil, err
		}
	}
	var sets []map[store.StateKey]uint64
	for _, id := range missing {
		st, err := s.fetchStateAfter(ctx, origin, room, id)
		if err != nil {
			return nil, fmt.Errorf("state at missing prev event %s: %w", id, err)
		}
		sets = append(sets, st)
	}
	var before map[store.StateKey]uint64
	err = s.store.View(func(tx *store.Tx) error {
		for _, id := range prevs {
			if slices.Contains(missing, id) {
				continue
			}
			l, err := s.load(tx, room.Version, id)
			if err != nil {
				return err
			}
			st, err := stateAfter(tx, l)
			if err != nil {
				return err
			}
			sets = append(sets, st)
		}
		before, err = s.resolve(tx, room, sets)
		return err
	})
	if err != nil {
		return nil, err
	}
	return before, nil
}

// usablePrev reports whether a stored event's state after it is known:
// a timeline event or a soft-failed one, not an outlier or a rejected one.
func usablePrev(rec *store.StoredEvent) bool {
	if rec.Flags&store.FlagRejected != 0 {
		return false
	}
	return rec.Flags&store.FlagOutlier == 0 || rec.Flags&store.FlagSoftFailed != 0
}

// missingPrevs returns the prev events whose state after them is unknown.
func (s *Service) missingPrevs(prevs []string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		for _, id := range prevs {
			rec, err := tx.EventByID(id)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !usablePrev(rec)) {
				out = append(out, id)
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// stateAfter returns the state after a stored event.
func stateAfter(tx *store.Tx, l *loaded) (map[store.StateKey]uint64, error) {
	var sk *store.StateKey
	if l.ev.IsState() {
		sk = &store.StateKey{Type: l.ev.Type(), Key: *l.ev.StateKey()}
	}
	return tx.StateAfter(l.rec, sk)
}

// fetchMissing asks origin for the events between our forward
// extremities and ev, and ingests those it returns, oldest first.
func (s *Service) fetchMissing(ctx context.Context, origin string, room *store.Room, ev *pdu.Event, depth int) {
	var earliest []string
	err := s.store.View(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(room.NID)
		if err != nil {
			return err
		}
		for _, p := range r.Extremities {
			if e, err := s.heads.event(tx, r.Version, p); err == nil {
				earliest = append(earliest, e.ID())
			}
		}
		return nil
	})
	if err != nil {
		return
	}
	raws, err := s.remote.MissingEvents(ctx, origin, room.RoomID, earliest, []string{ev.ID()}, maxMissingEvents)
	if err != nil {
		s.log.Info("federation: get_missing_events failed", "room", room.RoomID, "origin", origin, "err", err)
		return
	}
	evs := s.parseAll(ctx, room, raws)
	slices.SortFunc(evs, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
	for _, e := range evs {
		if e.ID() == ev.ID() {
			continue
		}
		if err := s.ingest(ctx, origin, room.NID, e, depth+1); err != nil {
			s.log.Info("federation: a missing event was not accepted", "event_id", e.ID(), "err", err)
		}
	}
}

// fetchStateAfter asks origin for the state at an event we do not have
// (and the event itself), stores what it returns as outliers, and returns
// the state after the event.
func (s *Service) fetchStateAfter(ctx context.Context, origin string, room *store.Room, eventID string) (map[store.StateKey]uint64, error) {
	if s.remote == nil {
		return nil, errors.New("no federation")
	}
	stateJS, chainJS, err := s.remote.State(ctx, origin, room.RoomID, eventID)
	if err != nil {
		return nil, err
	}
	evJS, err := s.remote.Event(ctx, origin, eventID)
	if err != nil {
		return nil, err
	}
	// The state after the event is the state before it and, if it is a
	// state event that passes its auth events, the event itself.
	return s.importState(ctx, room, stateJS, chainJS, s.parseAll(ctx, room, []json.RawMessage{evJS})...)
}

// importState stores a room's state another server gave us (and its auth
// chain) as outliers, each event checked against its own auth events,
// with more events on top, and returns the state they make, the rejected
// ones left out.
func (s *Service) importState(ctx context.Context, room *store.Room, stateJS, chainJS []json.RawMessage, more ...*pdu.Event) (map[store.StateKey]uint64, error) {
	state := append(s.parseAll(ctx, room, stateJS), more...)
	positions, err := s.storeOutliers(ctx, room, append(s.parseAll(ctx, room, chainJS), state...))
	if err != nil {
		return nil, err
	}
	out := map[store.StateKey]uint64{}
	for _, e := range state {
		if pos, ok := positions[e.ID()]; ok && e.IsState() {
			out[store.StateKey{Type: e.Type(), Key: *e.StateKey()}] = pos
		}
	}
	return out, nil
}

// resolve returns the state the state sets resolve to: the one set when
// there is one or they agree, else the room version's state resolution
// over them.
func (s *Service) resolve(tx *store.Tx, room *store.Room, sets []map[store.StateKey]uint64) (map[store.StateKey]uint64, error) {
	if len(sets) == 0 {
		return map[store.StateKey]uint64{}, nil
	}
	resolved, err := s.resolveWith(tx, room, sets, nil)
	if resolved == nil && err == nil {
		return sets[0], nil // they agree
	}
	return resolved, err
}

// authChain returns the auth events of roots, recursively, as far as they
// are stored.
func (s *Service) authChain(tx *store.Tx, room *store.Room, roots []*pdu.Event) ([]*pdu.Event, error) {
	chain, err := walkAuthChain(room, roots, func(id string) (*loaded, error) {
		l, err := s.load(tx, room.Version, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return l, err
	})
	out := make([]*pdu.Event, len(chain))
	for i, l := range chain {
		out[i] = l.ev
	}
	return out, err
}

// walkAuthChain returns the auth events of roots, recursively, each as
// find returns it (nil: left out, and not walked through), with room
// version 12's create event, which auth_events leave out.
func walkAuthChain(room *store.Room, roots []*pdu.Event, find func(eventID string) (*loaded, error)) ([]*loaded, error) {
	seen := map[string]bool{}
	var out []*loaded
	queue := slices.Clone(roots)
	if c := createEventID(room); c != "" {
		seen[c] = true
		l, err := find(c)
		if err != nil {
			return nil, err
		}
		if l != nil {
			out = append(out, l)
		}
	}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		for _, id := range e.AuthEventIDs() {
			if seen[id] {
				continue
			}
			seen[id] = true
			l, err := find(id)
			if err != nil {
				return nil, err
			}
			if l != nil {
				out = append(out, l)
				queue = append(queue, l.ev)
			}
		}
	}
	return out, nil
}
