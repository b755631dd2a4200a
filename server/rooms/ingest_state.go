package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"hearth/server/pdu"
	"hearth/store"
)

// maxMissingEvents is how many missing events one get_missing_events
// asks for.
const maxMissingEvents = 20

// stateBefore is step 3: the state before ev. When ev's prev events are
// unknown they are fetched from origin (get_missing_events, up to
// maxFetchDepth deep); where a gap remains, the state at the missing
// event is asked for (fetchStateAfter). Where the prev events' states
// differ they are resolved. ev must pass the auth rules against the
// result.
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

// stateAfterKnown reports whether the state after a stored event is
// known: that of a usable prev event, or that of a rejected event stored
// with the state before it, which is also the state after it (a rejected
// event changes nothing).
func stateAfterKnown(rec *store.StoredEvent) bool {
	return usablePrev(rec) || rec.Flags&store.FlagRejected != 0 && rec.StateBefore != 0
}

// missingPrevs returns the prev events whose state after them is unknown.
func (s *Service) missingPrevs(prevs []string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		for _, id := range prevs {
			rec, err := tx.EventByID(id)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !stateAfterKnown(rec)) {
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

// stateAfter returns the state after a stored event: for a rejected
// one, the state before it.
func stateAfter(tx *store.Tx, l *loaded) (map[store.StateKey]uint64, error) {
	var sk *store.StateKey
	if l.ev.IsState() && l.rec.Flags&store.FlagRejected == 0 {
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
	evs := slices.DeleteFunc(s.parseAll(ctx, room, raws), func(e *pdu.Event) bool { return e.ID() == ev.ID() })
	slices.SortFunc(evs, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
	for i, err := range s.ingestAll(ctx, origin, room, evs, depth+1) {
		if err != nil {
			s.log.Info("federation: a missing event was not accepted", "event_id", evs[i].ID(), "err", err)
		}
	}
}

// fetchStateAfter asks origin for an event we do not have and the state
// at it, stores them as outliers, and returns the state after the event.
// As Synapse does, it asks for the IDs of that state (/state_ids) and
// fetches the few it lacks one by one (/event); where it lacks many, or
// origin does not answer /state_ids, it asks for the whole (/state).
func (s *Service) fetchStateAfter(ctx context.Context, origin string, room *store.Room, eventID string) (map[store.StateKey]uint64, error) {
	if s.remote == nil {
		return nil, errors.New("no federation")
	}
	evJS, err := s.remote.Event(ctx, origin, eventID)
	if err != nil {
		return nil, err
	}
	self := s.parseAll(ctx, room, []json.RawMessage{evJS})
	if len(self) == 1 && self[0].ID() != eventID {
		return nil, fmt.Errorf("%s answered /event for %s with another event", origin, eventID)
	}
	stateIDs, chainIDs, err := s.remote.StateIDs(ctx, origin, room.RoomID, eventID)
	if err == nil {
		st, ok, err := s.stateFromIDs(ctx, origin, room, stateIDs, chainIDs, self)
		if err != nil || ok {
			return st, err
		}
	} else {
		s.log.Info("federation: state_ids failed; asking for the whole state", "event_id", eventID, "origin", origin, "err", err)
	}
	stateJS, chainJS, err := s.remote.State(ctx, origin, room.RoomID, eventID)
	if err != nil {
		return nil, err
	}
	// The state after the event is the state before it and, if it is a
	// state event that passes its auth events, the event itself.
	return s.importState(ctx, room, stateJS, chainJS, self...)
}

// maxParallelFetch bounds the /event requests one state fetch has in
// flight.
const maxParallelFetch = 8

// stateFromIDs is fetchStateAfter's /state_ids path: the state whose
// event IDs origin named, with self (the event, if fetched) on top. It
// fetches the events we lack one by one and stores them; ok is false,
// with nothing fetched, when we lack 10% or more of them (or more than
// maxAuthFetch), which one /state request serves better. An event that cannot be fetched is left
// out, and with it those whose auth chain it is part of (rejected).
func (s *Service) stateFromIDs(ctx context.Context, origin string, room *store.Room, stateIDs, chainIDs []string, self []*pdu.Event) (map[store.StateKey]uint64, bool, error) {
	all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(stateIDs), chainIDs...))))
	unknown, err := s.unknownEvents(all)
	if err != nil {
		return nil, false, err
	}
	if len(all) == 0 || len(unknown)*10 >= len(all) || len(unknown) > maxAuthFetch {
		return nil, false, nil
	}
	raws := make([]json.RawMessage, len(unknown))
	sem := make(chan struct{}, maxParallelFetch)
	var wg sync.WaitGroup
	for i, id := range unknown {
		wg.Add(1)
		sem <- struct{}{}
		go func() { // one /event request; the WaitGroup ends them all
			defer wg.Done()
			defer func() { <-sem }()
			raw, err := s.remote.Event(ctx, origin, id)
			if err != nil {
				s.log.Info("federation: a state event could not be fetched", "event_id", id, "origin", origin, "err", err)
				return
			}
			raws[i] = raw
		}()
	}
	wg.Wait()
	var evs []*pdu.Event
	for _, e := range s.parseAll(ctx, room, slices.DeleteFunc(raws, func(r json.RawMessage) bool { return r == nil })) {
		if slices.Contains(unknown, e.ID()) { // what we asked for, nothing else
			evs = append(evs, e)
		}
	}
	if _, err := s.storeOutliers(ctx, room, append(evs, self...)); err != nil {
		return nil, false, err
	}
	ids := slices.Clone(stateIDs)
	for _, e := range self {
		if e.IsState() {
			ids = append(ids, e.ID()) // after the state before it
		}
	}
	out := map[store.StateKey]uint64{}
	err = s.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			l, err := s.load(tx, room.Version, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if l.rec.RoomNID != room.NID || l.rec.Flags&store.FlagRejected != 0 || !l.ev.IsState() {
				continue
			}
			out[store.StateKey{Type: l.ev.Type(), Key: *l.ev.StateKey()}] = l.rec.Pos
		}
		return nil
	})
	return out, true, err
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
