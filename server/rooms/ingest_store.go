package rooms

import (
	"fmt"
	"slices"

	"hearth/server/pdu"
	"hearth/store"
)

// persistRemote is step 5: with the state before ev known, ev is checked
// against it (rejected if it fails) and against the room's current state
// (soft-failed if it fails: kept, but off the timeline and out of the
// state), then appended with its state; where it does not follow every
// forward extremity, the room's new current state is the resolution of
// the old one with the state after ev. policy, when set, is why the
// room's policy server does not recommend ev: it is soft-failed, once
// the auth rules have had their say.
func (s *Service) persistRemote(room *store.Room, ev *pdu.Event, before map[store.StateKey]uint64, relay bool, policy error) error {
	var p persisted
	err := s.store.Update(func(tx *store.Tx) (err error) {
		p, err = s.persistTx(tx, room.NID, ev, before, relay, policy)
		return err
	})
	if err != nil {
		return err
	}
	return s.persistedDone(room, ev, p)
}

// persisted is what persistTx did with an event.
type persisted struct {
	pos      uint64 // in the timeline at pos; 0 if not
	refusal  error  // why the state before it refused it
	softFail error  // why the current state, or the policy server, refused it
	deliver  func() // starts the delivery of what was queued
}

// persistTx is persistRemote's work, in the caller's write transaction.
// relay queues ev for the room's other servers in it; policy is as
// persistRemote's.
func (s *Service) persistTx(tx *store.Tx, roomNID uint64, ev *pdu.Event, before map[store.StateKey]uint64, relay bool, policy error) (p persisted, err error) {
	r, err := tx.RoomByNID(roomNID)
	if err != nil {
		return p, err
	}
	auth, err := s.stateEvents(tx, r, before, ev)
	if err != nil {
		return p, err
	}
	snap, err := tx.NewSnapshot(before, r.CurrentSnap)
	if err != nil {
		return p, err
	}
	if p.refusal = pdu.Allowed(ev, auth); p.refusal != nil {
		// With the state before it: the state after it, for the
		// events that follow it.
		_, err := tx.AddOutlier(r.NID, ev.ID(), ev.JSON(), store.FlagRejected, snap)
		return p, err
	}
	current, err := tx.CurrentState(r.NID, "")
	if err != nil {
		return p, err
	}
	curAuth, err := s.stateEvents(tx, r, current, ev)
	if err != nil {
		return p, err
	}
	if p.softFail = pdu.Allowed(ev, curAuth); p.softFail == nil {
		p.softFail = policy
	}
	if p.softFail != nil {
		_, err := tx.AddOutlier(r.NID, ev.ID(), ev.JSON(), store.FlagSoftFailed, snap)
		return p, err
	}
	ne := newEvent(ev, nil)
	ne.StateBefore = &snap
	// The current state is the resolution of the states after the
	// forward extremities: those ev does not follow, and ev.
	others, err := s.otherExtremities(tx, r, ev)
	if err != nil {
		return p, err
	}
	if len(others) > 0 {
		after := make(map[store.StateKey]uint64, len(before)+1)
		for k, v := range before {
			after[k] = v
		}
		if ev.IsState() {
			after[store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}] = 0 // ev itself, not stored yet
		}
		if ne.Current, err = s.resolveWith(tx, r, append(others, after), ev); err != nil {
			return p, err
		}
	}
	var servers []string
	if relay && s.QueueLocalEvent != nil {
		// Every server in the room but ours and the sender's, which
		// built the event: queued in this transaction, so no crash
		// keeps the event and loses its delivery.
		joined, err := s.joinedServers(tx, r)
		if err != nil {
			return p, err
		}
		servers = slices.DeleteFunc(slices.Clone(joined), func(n string) bool { return n == s.serverName || n == ev.Origin() })
	}
	if p.pos, err = tx.AppendEvent(r, ne); err != nil {
		return p, err
	}
	if ev.Type() == "m.room.redaction" && !ev.IsState() && !s.mayRedact(tx, r, ev) {
		err = s.indexRelation(tx, r, ev, p.pos)
	} else {
		err = s.indexEvent(tx, r, ev, p.pos, nil)
	}
	if err == nil && len(servers) > 0 {
		p.deliver, err = s.QueueLocalEvent(tx, servers, ev.JSON())
	}
	return p, err
}

// persistedDone finishes what persistTx did once it is durable, and
// returns the event's outcome.
func (s *Service) persistedDone(room *store.Room, ev *pdu.Event, p persisted) error {
	if p.refusal != nil {
		s.log.Info("federation: event rejected", "event_id", ev.ID(), "room", room.RoomID, "why", p.refusal)
		return fmt.Errorf("%w by the state before it: %v", ErrNotAllowed, p.refusal)
	}
	if p.softFail != nil {
		s.log.Info("federation: event soft-failed", "event_id", ev.ID(), "room", room.RoomID, "why", p.softFail)
		return nil
	}
	s.heads.add(p.pos, room.Version, 0, ev.JSON(), ev)
	s.appended(p.pos, room.RoomID)
	if p.deliver != nil {
		p.deliver()
	}
	return nil
}

// otherExtremities returns the states after the room's forward
// extremities that ev does not follow.
func (s *Service) otherExtremities(tx *store.Tx, r *store.Room, ev *pdu.Event) ([]map[store.StateKey]uint64, error) {
	prevs := ev.PrevEventIDs()
	var out []map[store.StateKey]uint64
	for _, p := range r.Extremities {
		e, err := s.heads.event(tx, r.Version, p)
		if err != nil {
			return nil, err
		}
		if slices.Contains(prevs, e.ID()) {
			continue
		}
		rec, err := tx.Event(p)
		if err != nil {
			return nil, err
		}
		st, err := stateAfter(tx, &loaded{rec: rec, ev: e})
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// resolveWith resolves state sets, where position 0 stands for ev, which
// is not stored yet (ev nil: every event is stored). In the result, ev's own entry, if it wins, is
// store.ThisEvent; nil means the sets agree.
func (s *Service) resolveWith(tx *store.Tx, r *store.Room, sets []map[store.StateKey]uint64, ev *pdu.Event) (map[store.StateKey]uint64, error) {
	evSets := make([][]*pdu.Event, len(sets))
	byID := map[string]uint64{}
	var conflicted []*pdu.Event
	for i, set := range sets {
		for k, pos := range set {
			var e *pdu.Event
			if pos == 0 {
				e = ev
			} else {
				var err error
				if e, err = s.heads.event(tx, r.Version, pos); err != nil {
					return nil, err
				}
				byID[e.ID()] = pos
			}
			evSets[i] = append(evSets[i], e)
			for _, other := range sets {
				if op, ok := other[k]; !ok || op != pos {
					conflicted = append(conflicted, e)
					break
				}
			}
		}
	}
	if len(conflicted) == 0 {
		return nil, nil
	}
	chain, err := s.authChain(tx, r, conflicted)
	if err != nil {
		return nil, err
	}
	resolved, err := pdu.Resolve(r.Version, evSets, chain, func(id string) *pdu.Event {
		l, err := s.load(tx, r.Version, id)
		if err != nil {
			return nil
		}
		return l.ev
	})
	if err != nil {
		return nil, err
	}
	out := make(map[store.StateKey]uint64, len(resolved))
	for _, e := range resolved {
		k := store.StateKey{Type: e.Type(), Key: *e.StateKey()}
		if ev != nil && e.ID() == ev.ID() {
			out[k] = store.ThisEvent
			continue
		}
		pos, ok := byID[e.ID()]
		if !ok {
			if pos, err = tx.EventPos(e.ID()); err != nil {
				return nil, err
			}
		}
		out[k] = pos
	}
	return out, nil
}

// mayRedact reports whether a remote redaction may take effect: its
// sender is of the same server as the redacted event's, or has the power
// to redact others' events (room versions 3+ leave this check to the
// server applying the redaction).
func (s *Service) mayRedact(tx *store.Tx, r *store.Room, red *pdu.Event) bool {
	target, err := s.load(tx, r.Version, red.Redacts())
	if err != nil {
		return true // applied when the target arrives
	}
	if target.ev.Origin() == red.Origin() {
		return true
	}
	create, err1 := s.stateEvent(tx, r, "m.room.create", "")
	pl, _ := s.stateEvent(tx, r, "m.room.power_levels", "")
	if err1 != nil {
		return false
	}
	ok, err := pdu.MayRedactOthers(create, pl, red.Sender())
	return err == nil && ok
}
