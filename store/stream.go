package store

import (
	"bytes"
	"encoding/binary"
)

// RoomStream returns a room's live timeline events with positions in
// (since, upto], oldest first: the newest limit of them, and whether older
// ones in the window were left out (a gappy, "limited" sync).
func (tx *Tx) RoomStream(roomNID, since, upto uint64, limit int) ([]*StoredEvent, bool, error) {
	c := tx.btx.Bucket(bucketRoomStream).Cursor()
	prefix := u64(roomNID)
	k, _ := c.Seek(nidKey(roomNID, u64(upto+1)))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var out []*StoredEvent
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		pos := binary.BigEndian.Uint64(k[8:])
		if pos <= since {
			break
		}
		if len(out) == limit {
			return reverse(out), true, nil
		}
		ev, err := tx.Event(pos)
		if err != nil {
			return nil, false, err
		}
		out = append(out, ev)
	}
	return reverse(out), false, nil
}

// LastRoomEvent returns a room's newest live event at or before upto, or
// ErrNotFound.
func (tx *Tx) LastRoomEvent(roomNID, upto uint64) (*StoredEvent, error) {
	evs, _, err := tx.RoomStream(roomNID, 0, upto, 1)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, ErrNotFound
	}
	return evs[0], nil
}

// RoomActiveSince reports whether a room has live events in (since, upto].
func (tx *Tx) RoomActiveSince(roomNID, since, upto uint64) bool {
	c := tx.btx.Bucket(bucketRoomStream).Cursor()
	k, _ := c.Seek(nidKey(roomNID, u64(since+1)))
	if k == nil || !bytes.HasPrefix(k, u64(roomNID)) {
		return false
	}
	return binary.BigEndian.Uint64(k[8:]) <= upto
}

func reverse(evs []*StoredEvent) []*StoredEvent {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}
