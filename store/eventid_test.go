package store

import (
	"testing"
	"time"
)

// An event record keeps its event ID (room versions 3 and later have none
// in their JSON, and computing it costs a redaction, an encoding and a
// hash), through a redaction's rewrite too; a record written before IDs
// were kept still reads, with no ID, and its JSON intact.
func TestEventRecordKeepsID(t *testing.T) {
	s, err := Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const js = `{"type":"m.room.message","content":{"body":"hi"}}`
	var timeline, outlier, old uint64
	err = s.Update(func(tx *Tx) error {
		room, err := tx.CreateRoom("!ids:localhost", "12")
		if err != nil {
			return err
		}
		if timeline, err = tx.AppendEvent(room, &NewEvent{EventID: "$timeline", JSON: []byte(js), Depth: 1, Type: "m.room.message"}); err != nil {
			return err
		}
		if outlier, err = tx.AddOutlier(room.NID, "$outlier", []byte(js), 0, 0); err != nil {
			return err
		}
		if err := tx.ReplaceEventJSON(timeline, []byte(`{"type":"m.room.message","content":{}}`), FlagRedacted); err != nil {
			return err
		}
		// A record as written before: header and JSON, no ID.
		if old, err = tx.btx.Bucket(bucketEvents).NextSequence(); err != nil {
			return err
		}
		rec := encodeEvent(&StoredEvent{RoomNID: room.NID, JSON: []byte(js)})
		if rec[16]&recordHasID != 0 {
			t.Fatal("a record without an ID is marked as keeping one")
		}
		return tx.btx.Bucket(bucketEvents).Put(u64(old), rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		for _, c := range []struct {
			pos   uint64
			id    string
			flags uint8
			json  string
		}{
			{timeline, "$timeline", FlagRedacted, `{"type":"m.room.message","content":{}}`},
			{outlier, "$outlier", FlagOutlier, js},
			{old, "", 0, js},
		} {
			rec, err := tx.Event(c.pos)
			if err != nil {
				return err
			}
			flags, id, raw, err := tx.EventRaw(c.pos)
			if err != nil {
				return err
			}
			if rec.ID != c.id || id != c.id || rec.Flags != c.flags || flags != c.flags || string(rec.JSON) != c.json || string(raw) != c.json {
				t.Errorf("event %d reads as ID %q/%q, flags %d/%d, JSON %s/%s; want %q, %d, %s", c.pos, rec.ID, id, rec.Flags, flags, rec.JSON, raw, c.id, c.flags, c.json)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}
