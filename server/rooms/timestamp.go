package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"hearth/server/mxerr"
	"hearth/store"
)

// EventAtTime is the answer to timestamp_to_event.
type EventAtTime struct {
	EventID        string `json:"event_id"`
	OriginServerTS int64  `json:"origin_server_ts"`
}

// EventNear finds the event closest to ts that userID may see: the first
// at or after it when forward, else the last at or before it. It walks the
// room's timeline in order (fine for rooms of a family server; an index
// by timestamp can come when profiles ask for one).
//
// When we have no such event, or the one we have borders on history we
// lack (we joined late, or missed events), the room's other servers are
// asked (federation timestamp_to_event), as Synapse does; a closer event
// one of them names is fetched, checked and stored as history before it
// is given, so the client can read and paginate from it.
func (s *Service) EventNear(ctx context.Context, userID, roomID string, ts int64, forward bool) (*EventAtTime, error) {
	var best *EventAtTime
	var room *store.Room
	gap := false
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		room = v.room
		if best, err = s.nearest(tx, v.room, ts, forward, v.visible); err != nil || best == nil {
			return err
		}
		gap, err = s.besideGap(tx, v.room, best.EventID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if (best == nil || gap) && s.remote != nil {
		if r := s.remoteEventNear(ctx, userID, room, ts, forward, best); r != nil {
			best = r
		}
	}
	if best == nil {
		return nil, mxerr.NotFound("No event found")
	}
	return best, nil
}

// besideGap reports whether a timeline event follows history we lack:
// one of its prev events is missing here, or not part of our timeline.
func (s *Service) besideGap(tx *store.Tx, room *store.Room, eventID string) (bool, error) {
	l, err := s.load(tx, room.Version, eventID)
	if err != nil {
		return false, err
	}
	for _, p := range l.ev.PrevEventIDs() {
		rec, err := tx.EventByID(p)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !usablePrev(rec)) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// remoteEventNear asks the room's other servers for the event closest to
// ts and returns the first answer closer than local (or any, when local
// is nil) that could be fetched, stored and shown to userID; nil when
// none could.
func (s *Service) remoteEventNear(ctx context.Context, userID string, room *store.Room, ts int64, forward bool, local *EventAtTime) *EventAtTime {
	servers, err := s.RemoteServers(room.RoomID)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	for _, server := range servers {
		r, err := s.remote.TimestampToEvent(ctx, server, room.RoomID, ts, forward)
		if err != nil {
			s.log.Info("federation: timestamp_to_event failed", "room", room.RoomID, "server", server, "err", err)
			continue
		}
		if local != nil && !closer(r, local, ts, forward) {
			return nil // ours is at least as close
		}
		if !s.fetchHistoryEvent(ctx, server, room, r.EventID) {
			continue
		}
		visible := false
		_ = s.store.View(func(tx *store.Tx) error {
			v, err := s.viewFor(tx, userID, room.RoomID)
			if err != nil {
				return err
			}
			rec, err := tx.EventByID(r.EventID)
			if err != nil || rec.Flags&(store.FlagOutlier|store.FlagRejected) != 0 {
				return err
			}
			visible, err = v.visible(rec)
			return err
		})
		if visible {
			return r
		}
	}
	return nil
}

// closer reports whether r is nearer ts than local in the search's
// direction.
func closer(r, local *EventAtTime, ts int64, forward bool) bool {
	if forward {
		return r.OriginServerTS >= ts && r.OriginServerTS < local.OriginServerTS
	}
	return r.OriginServerTS <= ts && r.OriginServerTS > local.OriginServerTS
}

// fetchHistoryEvent makes sure an event another server named is in our
// timeline: fetched from server (/event) when we lack it, verified, and
// stored as history like a backfilled event. It reports whether the
// event is now in our timeline.
func (s *Service) fetchHistoryEvent(ctx context.Context, server string, room *store.Room, eventID string) bool {
	var rec *store.StoredEvent
	_ = s.store.View(func(tx *store.Tx) error {
		rec, _ = tx.EventByID(eventID)
		return nil
	})
	if rec != nil && rec.Flags&(store.FlagOutlier|store.FlagRejected) == 0 {
		return true
	}
	if rec != nil && rec.Flags&store.FlagRejected != 0 {
		return false
	}
	raw, err := s.remote.Event(ctx, server, eventID)
	if err != nil {
		s.log.Info("federation: event not fetched", "event_id", eventID, "server", server, "err", err)
		return false
	}
	evs := s.parseAll(ctx, room, []json.RawMessage{raw})
	if len(evs) != 1 || evs[0].ID() != eventID || evs[0].RoomID() != room.RoomID {
		return false
	}
	unlock := s.lockRoom(room.RoomID)
	defer unlock()
	ok, err := s.addHistory(ctx, server, room, evs[0])
	if err != nil {
		s.log.Info("federation: a fetched event was not accepted", "event_id", eventID, "err", err)
	}
	return ok
}

// nearest walks a room's timeline for the event closest to ts among
// those visible (nil for all): the first at or after it when forward,
// else the last at or before it; nil when there is none.
func (s *Service) nearest(tx *store.Tx, room *store.Room, ts int64, forward bool, visible func(*store.StoredEvent) (bool, error)) (*EventAtTime, error) {
	var best *EventAtTime
	var cursor *store.TopoToken
	for {
		entries, err := tx.Timeline(room.NID, cursor, store.Forward, 256)
		if err != nil || len(entries) == 0 {
			return best, err
		}
		for i, e := range entries {
			cursor = &entries[i].Token
			if visible != nil {
				if ok, err := visible(e.Event); err != nil {
					return nil, err
				} else if !ok {
					continue
				}
			}
			ev, err := s.eventAt(tx, room.Version, e.Event.Pos)
			if err != nil {
				return nil, err
			}
			if forward && ev.OriginServerTS() >= ts {
				return &EventAtTime{ev.ID(), ev.OriginServerTS()}, nil
			}
			if !forward && ev.OriginServerTS() <= ts {
				best = &EventAtTime{ev.ID(), ev.OriginServerTS()}
			}
		}
	}
}
