package rooms

import (
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
func (s *Service) EventNear(userID, roomID string, ts int64, forward bool) (*EventAtTime, error) {
	var best *EventAtTime
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		best, err = s.nearest(tx, v.room, ts, forward, v.visible)
		return err
	})
	if err != nil {
		return nil, err
	}
	if best == nil {
		return nil, mxerr.NotFound("No event found")
	}
	return best, nil
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
