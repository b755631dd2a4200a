package store

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// AccountData is one piece of a user's account data, global (RoomID "")
// or for a room.
type AccountData struct {
	RoomID  string          `json:"room_id,omitempty"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
	Pos     uint64          `json:"pos"` // the stream position of the last change
}

func accountDataKey(localpart, roomID, typ string) []byte {
	k := append([]byte(localpart), 0)
	k = append(append(k, roomID...), 0)
	return append(k, typ...)
}

// PutAccountData stores account data at a new stream position, which it
// returns: /sync delivers it to the user's devices by that position.
func (tx *Tx) PutAccountData(localpart string, d *AccountData) (uint64, error) {
	pos, err := tx.btx.Bucket(bucketEvents).NextSequence()
	if err != nil {
		return 0, err
	}
	d.Pos = pos
	return pos, tx.putJSON(bucketAccountData, accountDataKey(localpart, d.RoomID, d.Type), d)
}

// GetAccountData returns one piece of account data, or ErrNotFound.
func (tx *Tx) GetAccountData(localpart, roomID, typ string) (*AccountData, error) {
	var d AccountData
	if err := tx.getJSON(bucketAccountData, accountDataKey(localpart, roomID, typ), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// AccountDataSince returns a user's account data changed after position
// since (all of it for 0), up to upto.
func (tx *Tx) AccountDataSince(localpart string, since, upto uint64) ([]AccountData, error) {
	prefix := append([]byte(localpart), 0)
	var out []AccountData
	c := tx.btx.Bucket(bucketAccountData).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var d AccountData
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("store: decode account data: %w", err)
		}
		if d.Pos > since && d.Pos <= upto {
			out = append(out, d)
		}
	}
	return out, nil
}
