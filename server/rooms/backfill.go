package rooms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"hearth/server/pdu"
	"hearth/store"
)

// backfillTimeout bounds the wait a /messages request spends fetching
// history from other servers.
const backfillTimeout = 10 * time.Second

// backfill fetches the history of a room before our earliest event from
// a server in the room, when our timeline starts with a gap (we joined
// late), and stores it in topological order. It reports whether it added
// any event.
func (s *Service) backfill(ctx context.Context, roomID string, limit int) (bool, error) {
	if s.remote == nil {
		return false, nil
	}
	unlock := s.lockRoom(roomID)
	defer unlock()
	var room *store.Room
	var from []string
	err := s.store.View(func(tx *store.Tx) (err error) {
		if room, err = knownRoom(tx, roomID); err != nil {
			return err
		}
		first, err := tx.Timeline(room.NID, nil, store.Forward, 1)
		if err != nil || len(first) == 0 {
			return err
		}
		ev, err := s.heads.event(tx, room.Version, first[0].Event.Pos)
		if err != nil {
			return err
		}
		for _, p := range ev.PrevEventIDs() {
			if rec, err := tx.EventByID(p); errors.Is(err, store.ErrNotFound) || (err == nil && !usablePrev(rec)) {
				from = append(from, p)
			}
		}
		return nil
	})
	if err != nil || len(from) == 0 {
		return false, err
	}
	servers, err := s.RemoteServers(roomID)
	if err != nil {
		return false, err
	}
	for _, server := range servers {
		raws, err := s.remote.Backfill(ctx, server, roomID, from, limit)
		if err != nil {
			s.log.Info("federation: backfill failed", "room", roomID, "server", server, "err", err)
			continue
		}
		evs := s.parseAll(ctx, room, raws)
		slices.SortFunc(evs, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
		added := 0
		for _, ev := range evs {
			ok, err := s.addHistory(ctx, server, room, ev)
			if err != nil {
				s.log.Info("federation: a backfilled event was not accepted", "event_id", ev.ID(), "err", err)
			}
			if ok {
				added++
			}
		}
		if added > 0 {
			return true, nil
		}
	}
	return false, nil
}

// addHistory checks and stores one backfilled event: against its auth
// events and the state before it (from its prev events where we have
// them, else asked of server).
func (s *Service) addHistory(ctx context.Context, server string, room *store.Room, ev *pdu.Event) (bool, error) {
	var known *store.StoredEvent
	_ = s.store.View(func(tx *store.Tx) error {
		known, _ = tx.EventByID(ev.ID())
		return nil
	})
	if known != nil && (known.Flags&store.FlagOutlier == 0 || known.Flags&store.FlagRejected != 0) {
		return false, nil
	}
	if err := s.checkAuthEvents(ctx, server, room, ev, nil); err != nil {
		return false, err
	}
	before, err := s.historyState(ctx, server, room, ev)
	if err != nil {
		return false, err
	}
	var refusal error
	err = s.store.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(room.NID)
		if err != nil {
			return err
		}
		auth, err := s.stateEvents(tx, r, before, ev)
		if err != nil {
			return err
		}
		if refusal = pdu.Allowed(ev, auth); refusal != nil {
			_, err := tx.AddOutlier(r.NID, ev.ID(), ev.JSON(), store.FlagRejected, 0)
			return err
		}
		snap, err := tx.NewSnapshot(before, 0)
		if err != nil {
			return err
		}
		pos, err := tx.AddHistory(r, newEvent(ev, nil), snap)
		if err != nil {
			return err
		}
		return s.indexEvent(tx, r, ev, pos, nil)
	})
	if err == nil && refusal != nil {
		err = fmt.Errorf("%w: not allowed by the state before it: %v", ErrRejected, refusal)
	}
	return err == nil, err
}

// historyState returns the state before a backfilled event: resolved
// from the states after its prev events when we have them all, else the
// state server says it had (/state), stored as outliers.
func (s *Service) historyState(ctx context.Context, server string, room *store.Room, ev *pdu.Event) (map[store.StateKey]uint64, error) {
	missing, err := s.missingPrevs(ev.PrevEventIDs())
	if err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		var before map[store.StateKey]uint64
		err := s.store.View(func(tx *store.Tx) error {
			var sets []map[store.StateKey]uint64
			for _, id := range ev.PrevEventIDs() {
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
		return before, err
	}
	stateJS, chainJS, err := s.remote.State(ctx, server, room.RoomID, ev.ID())
	if err != nil {
		return nil, err
	}
	return s.importState(ctx, room, stateJS, chainJS)
}
