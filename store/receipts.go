package store

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Receipt is a user's read receipt in a room.
type Receipt struct {
	UserID   string `json:"user_id"`
	Type     string `json:"type"` // m.read or m.read.private
	ThreadID string `json:"thread_id,omitempty"`
	EventID  string `json:"event_id"`
	EventPos uint64 `json:"event_pos"`
	TS       int64  `json:"ts"`
	Pos      uint64 `json:"pos"` // the stream position of the change
}

func receiptKey(nid uint64, userID, typ, thread string) []byte {
	k := append(u64(nid), userID...)
	k = append(append(k, 0), typ...)
	return append(append(k, 0), thread...)
}

// PutReceipt stores a receipt at a new stream position, which it returns.
func (tx *Tx) PutReceipt(roomNID uint64, r *Receipt) (uint64, error) {
	pos, err := tx.btx.Bucket(bucketEvents).NextSequence()
	if err != nil {
		return 0, err
	}
	r.Pos = pos
	return pos, tx.putJSON(bucketReceipts, receiptKey(roomNID, r.UserID, r.Type, r.ThreadID), r)
}

// Receipts returns a room's receipts changed in (since, upto].
func (tx *Tx) Receipts(roomNID, since, upto uint64) ([]Receipt, error) {
	prefix := u64(roomNID)
	var out []Receipt
	c := tx.btx.Bucket(bucketReceipts).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r Receipt
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("store: decode receipt: %w", err)
		}
		if r.Pos > since && r.Pos <= upto {
			out = append(out, r)
		}
	}
	return out, nil
}

// UserReceipt returns one of a user's receipts in a room, or ErrNotFound.
func (tx *Tx) UserReceipt(roomNID uint64, userID, typ, thread string) (*Receipt, error) {
	var r Receipt
	if err := tx.getJSON(bucketReceipts, receiptKey(roomNID, userID, typ, thread), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
