package servertest

import (
	"encoding/json"
	"fmt"

	"hearth/store"
)

// CheckRoomChain returns an error unless a room's timeline, read from st,
// is one chain, as a room only this server writes to must be: one forward
// extremity, the last event; the first event without prev_events; every
// later event with exactly one prev event, the one before it in
// topological order.
func CheckRoomChain(st *store.Store, roomID string) error {
	return st.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return fmt.Errorf("room %s: %w", roomID, err)
		}
		if len(room.Extremities) != 1 {
			return fmt.Errorf("room %s has %d forward extremities, want 1", roomID, len(room.Extremities))
		}
		entries, err := tx.Timeline(room.NID, nil, store.Forward, 1<<20)
		if err != nil {
			return err
		}
		var prevPos uint64
		for i, e := range entries {
			var ev struct {
				PrevEvents []json.RawMessage `json:"prev_events"`
			}
			if err := json.Unmarshal(e.Event.JSON, &ev); err != nil {
				return fmt.Errorf("room %s: event at %d: %w", roomID, e.Event.Pos, err)
			}
			var prevs []uint64
			for _, p := range ev.PrevEvents {
				pos, err := tx.EventPos(prevEventID(p))
				if err != nil {
					return fmt.Errorf("room %s: event at %d: prev event %s: %w", roomID, e.Event.Pos, p, err)
				}
				prevs = append(prevs, pos)
			}
			switch {
			case i == 0 && len(prevs) != 0:
				return fmt.Errorf("room %s: the first event has prev_events %s", roomID, ev.PrevEvents)
			case i > 0 && (len(prevs) != 1 || prevs[0] != prevPos):
				return fmt.Errorf("room %s: event %d of %d (at %d) follows %v, want [%d]", roomID, i, len(entries), e.Event.Pos, prevs, prevPos)
			}
			prevPos = e.Event.Pos
		}
		if len(entries) == 0 {
			return fmt.Errorf("room %s has no events", roomID)
		}
		if last := entries[len(entries)-1].Event.Pos; room.Extremities[0] != last {
			return fmt.Errorf("room %s: the forward extremity is %d, not the last event %d", roomID, room.Extremities[0], last)
		}
		return nil
	})
}

// prevEventID reads one prev_events entry: an event ID, or in room
// versions 1 and 2 an [event ID, hashes] pair.
func prevEventID(raw json.RawMessage) string {
	var id string
	if json.Unmarshal(raw, &id) == nil {
		return id
	}
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) == nil && len(pair) > 0 {
		_ = json.Unmarshal(pair[0], &id)
	}
	return id
}
