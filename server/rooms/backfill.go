package rooms

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"hearth/server/pdu"
	"hearth/store"
)

// backfillTimeout bounds the wait a /messages request spends fetching
// history from other servers.
const backfillTimeout = 10 * time.Second

// backfillRetry is how long a gap no server would fill is left alone:
// every page across it would otherwise wait on the same servers again.
const backfillRetry = time.Minute

// backfillMisses remembers when gaps no server filled were last tried.
type backfillMisses struct {
	mu    sync.Mutex
	tried map[uint64]time.Time // guarded by mu; by the gap event's position
}

// untried returns the gaps not tried in vain within backfillRetry.
func (m *backfillMisses) untried(gaps []store.TopoToken, now time.Time) []store.TopoToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(gaps), func(g store.TopoToken) bool {
		return now.Sub(m.tried[g.Pos]) < backfillRetry
	})
}

// missed records gaps tried in vain, forgetting those tried long ago.
func (m *backfillMisses) missed(gaps []store.TopoToken, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tried == nil {
		m.tried = map[uint64]time.Time{}
	}
	for pos, at := range m.tried {
		if now.Sub(at) >= backfillRetry {
			delete(m.tried, pos)
		}
	}
	for _, g := range gaps {
		m.tried[g.Pos] = now
	}
}

// backfill fetches from a server in the room the history behind gaps in
// its timeline (backfill points, see store.GapPrevs), and stores it in
// topological order. It reports whether it added any event. Gaps found
// filled are dropped; gaps no server filled are not tried again for
// backfillRetry.
func (s *Service) backfill(ctx context.Context, roomID string, gaps []store.TopoToken) (bool, error) {
	if gaps = s.misses.untried(gaps, s.now()); len(gaps) == 0 {
		return false, nil
	}
	unlock := s.lockRoom(roomID)
	defer unlock()
	var room *store.Room
	err := s.store.View(func(tx *store.Tx) (err error) {
		room, err = knownRoom(tx, roomID)
		return err
	})
	if err != nil {
		return false, err
	}
	from, err := s.openGaps(room, gaps)
	if err != nil || len(from) == 0 {
		return false, err
	}
	servers, err := s.RemoteServers(roomID)
	if err != nil {
		return false, err
	}
	for _, server := range servers {
		raws, err := s.remote.Backfill(ctx, server, roomID, from, maxBackfill)
		if err != nil {
			s.log.Info("federation: backfill failed", "room", roomID, "server", server, "err", err)
			continue
		}
		evs := s.parseAll(ctx, room, raws)
		slices.SortFunc(evs, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
		added := 0
		for i := 0; i < len(evs); {
			// Runs of events whose prev and auth events are stored (all
			// but the oldest, usually) go in one commit; the others one
			// at a time, asking server for what they lack.
			n, took, err := s.addHistoryReady(room, evs[i:])
			if err != nil {
				s.log.Warn("federation: storing backfilled events together failed; taking them one by one", "room", roomID, "err", err)
				n, took = 0, 0
			}
			added += took
			if i += n; n > 0 || i == len(evs) {
				continue
			}
			ok, err := s.addHistory(ctx, server, room, evs[i])
			if err != nil {
				s.log.Info("federation: a backfilled event was not accepted", "event_id", evs[i].ID(), "err", err)
			}
			if ok {
				added++
			}
			i++
		}
		if added > 0 {
			_, err := s.openGaps(room, gaps)
			return true, err
		}
	}
	s.misses.missed(gaps, s.now())
	return false, nil
}

// openGaps returns the prev events missing behind gaps, and drops the
// gaps that nothing is missing behind any more.
func (s *Service) openGaps(room *store.Room, gaps []store.TopoToken) ([]string, error) {
	var from []string
	err := s.store.Update(func(tx *store.Tx) error {
		from = from[:0]
		for _, g := range gaps {
			ev, err := s.heads.event(tx, room.Version, g.Pos)
			if err != nil {
				return err
			}
			missing := tx.GapPrevs(ev.PrevEventIDs())
			if len(missing) == 0 {
				if err := tx.DropBackfillPoint(room.NID, g); err != nil {
					return err
				}
			}
			for _, id := range missing {
				if !slices.Contains(from, id) {
					from = append(from, id)
				}
			}
		}
		return nil
	})
	return from, err
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
		refusal, err = s.historyTx(tx, r, ev, before)
		return err
	})
	if err == nil && refusal != nil {
		err = fmt.Errorf("%w: not allowed by the state before it: %v", ErrRejected, refusal)
	}
	return err == nil, err
}

// historyTx checks a backfilled event against the state before it and
// stores it in r's history, or as rejected with the refusal it returns.
func (s *Service) historyTx(tx *store.Tx, r *store.Room, ev *pdu.Event, before map[store.StateKey]uint64) (refusal, err error) {
	auth, err := s.stateEvents(tx, r, before, ev)
	if err != nil {
		return nil, err
	}
	if refusal = pdu.Allowed(ev, auth); refusal != nil {
		_, err := tx.AddOutlier(r.NID, ev.ID(), ev.JSON(), store.FlagRejected, 0)
		return refusal, err
	}
	snap, err := tx.NewSnapshot(before, 0)
	if err != nil {
		return nil, err
	}
	pos, err := tx.AddHistory(r, newEvent(ev, nil), snap)
	if err != nil {
		return nil, err
	}
	return nil, s.indexEvent(tx, r, ev, pos, nil)
}

// addHistoryReady stores, in one write transaction, the backfilled
// events at the start of evs that need nothing from other servers (as
// readyTx finds them), each checked as addHistory checks it, and returns
// how many it took and how many of those it added to the history (the
// others, refused, are stored rejected).
func (s *Service) addHistoryReady(room *store.Room, evs []*pdu.Event) (taken, added int, err error) {
	ready := false
	err = s.store.View(func(tx *store.Tx) (err error) {
		_, _, ready, err = s.readyTx(tx, room, evs[0])
		return err
	})
	if err != nil || !ready {
		return 0, 0, err
	}
	var refused []string
	err = s.store.Update(func(tx *store.Tx) error {
		taken, added, refused = 0, 0, refused[:0]
		r, err := tx.RoomByNID(room.NID)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			before, auth, ok, err := s.readyTx(tx, r, ev)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			taken++
			if pdu.Allowed(ev, auth) != nil {
				refused = append(refused, ev.ID())
				if _, err := tx.AddOutlier(r.NID, ev.ID(), ev.JSON(), store.FlagRejected, 0); err != nil {
					return err
				}
				continue
			}
			refusal, err := s.historyTx(tx, r, ev, before)
			if err != nil {
				return err
			}
			if refusal != nil {
				refused = append(refused, ev.ID())
				continue
			}
			added++
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, id := range refused {
		s.log.Info("federation: a backfilled event was not accepted", "event_id", id, "room", room.RoomID)
	}
	return taken, added, nil
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
