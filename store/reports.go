package store

import (
	"encoding/json"
	"fmt"
)

// Report is a room or event a user reported to the server's admins.
type Report struct {
	ID       uint64 `json:"id"`
	Reporter string `json:"reporter"`
	RoomID   string `json:"room_id"`
	EventID  string `json:"event_id,omitempty"` // "" for a report of the room
	Reason   string `json:"reason,omitempty"`
	Score    *int   `json:"score,omitempty"`
	TS       int64  `json:"ts"`
}

// AddReport stores a report, giving it the next ID.
func (tx *Tx) AddReport(r *Report) error {
	b := tx.btx.Bucket(bucketReports)
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	r.ID = id
	return tx.putJSON(bucketReports, u64(id), r)
}

// Reports returns every report, oldest first.
func (tx *Tx) Reports() ([]Report, error) {
	var out []Report
	err := tx.btx.Bucket(bucketReports).ForEach(func(k, v []byte) error {
		var r Report
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("store: decode report: %w", err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}
