package store

import (
	"bytes"
	"encoding/binary"
)

// A gap in a room's timeline is where an event follows prev events we
// do not have in the timeline: a room joined through another server
// starts with one (the join follows history we never saw), and an event
// whose missing prev events were not fetched (get_missing_events brought
// only part of them, the state was asked for instead) leaves one behind
// it. Sync marks a timeline that crosses a gap limited; /messages fills
// gaps from other servers (backfill) as it pages back across them.

// GapPrevs returns the prev events that leave a gap before an event:
// unknown, or known only as an outlier (a piece of state or an auth
// event learnt from another server) that is neither rejected nor
// soft-failed, so its place in the timeline is unknown. A rejected or
// soft-failed prev event is no gap: there is nothing more to fetch.
func (tx *Tx) GapPrevs(prevs []string) []string {
	var out []string
	for _, id := range prevs {
		pos, err := tx.EventPos(id)
		if err != nil {
			out = append(out, id)
			continue
		}
		flags, _, _, err := tx.EventRaw(pos)
		if err != nil || flags&FlagOutlier != 0 && flags&(FlagRejected|FlagSoftFailed) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// markGap records the gap before a timeline event at pos, if it follows
// one: as a backfill point, and for a live event also in the stream.
func (tx *Tx) markGap(roomNID uint64, pos uint64, depth int64, prevs []string, live bool) error {
	if len(tx.GapPrevs(prevs)) == 0 {
		return nil
	}
	if err := tx.btx.Bucket(bucketBackfillPoints).Put(nidKey(roomNID, u64(uint64(depth)), u64(pos)), nil); err != nil {
		return err
	}
	if !live {
		return nil
	}
	return tx.btx.Bucket(bucketStreamGaps).Put(nidKey(roomNID, u64(pos)), nil)
}

// LastStreamGap returns the position of the newest live event of a room
// in (since, upto] that follows a gap, and whether there is one.
func (tx *Tx) LastStreamGap(roomNID, since, upto uint64) (uint64, bool) {
	c := tx.btx.Bucket(bucketStreamGaps).Cursor()
	prefix := u64(roomNID)
	k, _ := c.Seek(nidKey(roomNID, u64(upto+1)))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	pos := binary.BigEndian.Uint64(k[8:])
	return pos, pos > since && pos <= upto
}

// BackfillPoints returns up to limit of a room's unfilled gaps whose
// event's depth is in [low, high], deepest first, as the places of those
// events in the topological order.
func (tx *Tx) BackfillPoints(roomNID uint64, low, high int64, limit int) []TopoToken {
	if high < low || high < 0 {
		return nil
	}
	c := tx.btx.Bucket(bucketBackfillPoints).Cursor()
	prefix := u64(roomNID)
	k, _ := c.Seek(nidKey(roomNID, u64(uint64(high)+1)))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var out []TopoToken
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Prev() {
		t := TopoToken{Depth: int64(binary.BigEndian.Uint64(k[8:])), Pos: binary.BigEndian.Uint64(k[16:])}
		if t.Depth < low {
			break
		}
		out = append(out, t)
	}
	return out
}

// DropBackfillPoint forgets a gap that backfill filled.
func (tx *Tx) DropBackfillPoint(roomNID uint64, t TopoToken) error {
	return tx.btx.Bucket(bucketBackfillPoints).Delete(nidKey(roomNID, u64(uint64(t.Depth)), u64(t.Pos)))
}

// isLive reports whether the event at pos is in a room's live timeline,
// the stream /sync delivers (not backfilled history).
func (tx *Tx) isLive(roomNID, pos uint64) bool {
	return tx.btx.Bucket(bucketRoomStream).Get(nidKey(roomNID, u64(pos))) != nil
}
