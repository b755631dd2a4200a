package rooms

import (
	"hearth/server/filter"
	"hearth/store"
)

// Context is the answer to /context: an event with the events around it.
type Context struct {
	Event        *ClientEvent   `json:"event"`
	EventsBefore []*ClientEvent `json:"events_before"`
	EventsAfter  []*ClientEvent `json:"events_after"`
	Start        string         `json:"start"`
	End          string         `json:"end"`
	State        []*ClientEvent `json:"state"`
}

// EventContext returns an event userID may see with up to limit visible
// events around it (half before, rounded down, as Synapse splits), tokens
// to page on in each direction, and the room state at the event (only the
// members of the senders shown, with lazy_load_members).
func (s *Service) EventContext(userID, roomID, eventID string, limit int, f *filter.RoomEvent) (*Context, error) {
	out := &Context{EventsBefore: []*ClientEvent{}, EventsAfter: []*ClientEvent{}, State: []*ClientEvent{}}
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		rec, err := s.visibleEvent(tx, v, eventID)
		if err != nil {
			return err
		}
		if out.Event, err = s.clientEvent(tx, v, rec); err != nil {
			return err
		}
		ev, err := s.eventAt(tx, v.room.Version, rec.Pos)
		if err != nil {
			return err
		}
		at := store.TopoToken{Depth: ev.Depth(), Pos: rec.Pos}
		out.Start, out.End = topoToken(&at), topoToken(&at)
		collect := func(dir store.TimelineDir, want int, into *[]*ClientEvent, token *string) error {
			cursor := &at
			for len(*into) < want {
				entries, err := tx.Timeline(v.room.NID, cursor, dir, want-len(*into))
				if err != nil || len(entries) == 0 {
					return err
				}
				for i, e := range entries {
					cursor = &entries[i].Token
					*token = topoToken(cursor)
					ce, err := s.shown(tx, v, e.Event, f)
					if err != nil {
						return err
					}
					if ce != nil {
						*into = append(*into, ce)
					}
				}
			}
			return nil
		}
		before := limit / 2
		if err := collect(store.Backward, before, &out.EventsBefore, &out.Start); err != nil {
			return err
		}
		if err := collect(store.Forward, limit-before, &out.EventsAfter, &out.End); err != nil {
			return err
		}
		// end is the position just after the last event given (the event
		// itself when none came after it): paging back from it gives that
		// event too, as Synapse's token does, and paging on does not.
		if t, err := parseTopoToken(out.End); err == nil {
			t.Pos++
			out.End = topoToken(t)
		}
		// The state at the event: after it, if it is a state event.
		st, err := tx.StateAt(rec.StateBefore)
		if err != nil {
			return err
		}
		if ev.IsState() {
			st[store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}] = rec.Pos
		}
		senders := map[string]bool{out.Event.Sender: true}
		for _, ce := range append(out.EventsBefore, out.EventsAfter...) {
			senders[ce.Sender] = true
		}
		for sk, pos := range st {
			if f != nil && f.LazyLoadMembers && sk.Type == "m.room.member" && !senders[sk.Key] {
				continue
			}
			ce, err := s.clientEventAt(tx, v, pos)
			if err != nil {
				return err
			}
			out.State = append(out.State, ce)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
