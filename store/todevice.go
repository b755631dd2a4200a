package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// ToDevice is a message sent straight to one device.
type ToDevice struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

func toDevicePrefix(localpart, deviceID string) []byte {
	return append(append(append([]byte(localpart), 0), deviceID...), 0)
}

// QueueToDevice queues a message for a device at a new stream position,
// which it returns.
func (tx *Tx) QueueToDevice(localpart, deviceID string, m *ToDevice) (uint64, error) {
	pos, err := tx.btx.Bucket(bucketEvents).NextSequence()
	if err != nil {
		return 0, err
	}
	return pos, tx.putJSON(bucketToDevice, append(toDevicePrefix(localpart, deviceID), u64(pos)...), m)
}

// PendingToDevice returns a device's messages queued in (since, upto], in
// order.
func (tx *Tx) PendingToDevice(localpart, deviceID string, since, upto uint64) ([]ToDevice, error) {
	prefix := toDevicePrefix(localpart, deviceID)
	var out []ToDevice
	c := tx.btx.Bucket(bucketToDevice).Cursor()
	for k, v := c.Seek(append(prefix, u64(since+1)...)); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
		if binary.BigEndian.Uint64(k[len(prefix):]) > upto {
			break
		}
		var m ToDevice
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("store: decode to-device message: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// AckToDevice deletes a device's messages at or before pos: the device
// has synced past them. It reports whether there were any.
func (tx *Tx) AckToDevice(localpart, deviceID string, pos uint64) (bool, error) {
	prefix := toDevicePrefix(localpart, deviceID)
	b := tx.btx.Bucket(bucketToDevice)
	c := b.Cursor()
	any := false
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Seek(prefix) {
		if binary.BigEndian.Uint64(k[len(prefix):]) > pos {
			break
		}
		if err := b.Delete(k); err != nil {
			return any, err
		}
		any = true
	}
	return any, nil
}

// HasToDevice reports whether a device has messages at or before pos.
func (tx *Tx) HasToDevice(localpart, deviceID string, pos uint64) bool {
	prefix := toDevicePrefix(localpart, deviceID)
	k, _ := tx.btx.Bucket(bucketToDevice).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 && binary.BigEndian.Uint64(k[len(prefix):]) <= pos
}

// MarkTxn records that a client transaction made position pos (for
// transactions that append no room event, such as sendToDevice: roomNID 0).
func (tx *Tx) MarkTxn(k *TxnKey, roomNID, pos uint64) error {
	return tx.btx.Bucket(bucketTxnIDs).Put(txnKey(k, roomNID), u64(pos))
}
