package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// End-to-end encryption across servers: what other servers were told of
// our users' devices, the device lists of other servers' users we keep in
// a cache, and the to-device messages peers already delivered.

// FederatedDevices is what other servers were last told of a local user's
// devices and cross-signing keys, and the device-list stream ID it was
// told under: the next change is sent as the difference from it, with
// that stream ID as its prev_id.
type FederatedDevices struct {
	StreamID int64 `json:"stream_id"`
	// Devices maps a device ID to a digest of what was sent for it.
	Devices map[string]string `json:"devices"`
	// CrossSigning maps a usage to a digest of the key sent for it.
	CrossSigning map[string]string `json:"cross_signing"`
}

// FederatedDevices returns what other servers were last told of a local
// user's devices; nothing told yet is an empty record, stream ID 0.
func (tx *Tx) FederatedDevices(userID string) (*FederatedDevices, error) {
	var f FederatedDevices
	err := tx.getJSON(bucketFederatedDevices, []byte(userID), &f)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if f.Devices == nil {
		f.Devices = map[string]string{}
	}
	if f.CrossSigning == nil {
		f.CrossSigning = map[string]string{}
	}
	return &f, nil
}

// PutFederatedDevices records what other servers were told of a local
// user's devices.
func (tx *Tx) PutFederatedDevices(userID string, f *FederatedDevices) error {
	return tx.putJSON(bucketFederatedDevices, []byte(userID), f)
}

// RemoteDeviceList is the cached device list of another server's user:
// kept current by their server's m.device_list_update and
// m.signing_key_update EDUs, and replaced whole by a resync.
type RemoteDeviceList struct {
	// StreamID is the newest update applied (or the resync's stream ID).
	StreamID int64 `json:"stream_id"`
	// Recent holds the stream IDs of the last updates applied: an update
	// whose prev_id names only these follows on from what is cached.
	Recent         []int64         `json:"recent"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
	// Pos is the stream position of the resync that fetched the list:
	// updates are followed only while a room is shared, so the list is
	// current only if a room has been shared without a break since.
	Pos uint64 `json:"pos"`
}

// RemoteDevice is one cached device of another server's user.
type RemoteDevice struct {
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"display_name,omitempty"`
	Keys        json.RawMessage `json:"keys,omitempty"`
}

// RemoteDeviceList returns the cached device list of a remote user, or
// ErrNotFound when none is cached.
func (tx *Tx) RemoteDeviceList(userID string) (*RemoteDeviceList, error) {
	var l RemoteDeviceList
	if err := tx.getJSON(bucketRemoteDeviceLists, []byte(userID), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// PutRemoteDeviceList stores the cached device list head of a remote user.
func (tx *Tx) PutRemoteDeviceList(userID string, l *RemoteDeviceList) error {
	return tx.putJSON(bucketRemoteDeviceLists, []byte(userID), l)
}

func remoteDeviceKey(userID, deviceID string) []byte {
	return append(append([]byte(userID), 0), deviceID...)
}

// RemoteDevices returns the cached devices of a remote user, in device ID
// order.
func (tx *Tx) RemoteDevices(userID string) ([]RemoteDevice, error) {
	prefix := append([]byte(userID), 0)
	var out []RemoteDevice
	c := tx.btx.Bucket(bucketRemoteDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var d RemoteDevice
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("store: decode remote device %q: %w", k, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// PutRemoteDevice caches (or replaces) one device of a remote user.
func (tx *Tx) PutRemoteDevice(userID string, d *RemoteDevice) error {
	return tx.putJSON(bucketRemoteDevices, remoteDeviceKey(userID, d.DeviceID), d)
}

// DeleteRemoteDevice removes one cached device of a remote user.
func (tx *Tx) DeleteRemoteDevice(userID, deviceID string) error {
	return tx.btx.Bucket(bucketRemoteDevices).Delete(remoteDeviceKey(userID, deviceID))
}

// ReplaceRemoteDevices replaces a remote user's whole cached device list,
// as a resync fetched it.
func (tx *Tx) ReplaceRemoteDevices(userID string, l *RemoteDeviceList, devices []RemoteDevice) error {
	b := tx.btx.Bucket(bucketRemoteDevices)
	prefix := append([]byte(userID), 0)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for i := range devices {
		if err := tx.PutRemoteDevice(userID, &devices[i]); err != nil {
			return err
		}
	}
	return tx.PutRemoteDeviceList(userID, l)
}

// DropRemoteDeviceList forgets a remote user's cached device list.
func (tx *Tx) DropRemoteDeviceList(userID string) error {
	if err := tx.ReplaceRemoteDevices(userID, &RemoteDeviceList{}, nil); err != nil {
		return err
	}
	return tx.btx.Bucket(bucketRemoteDeviceLists).Delete([]byte(userID))
}

// MarkInboundToDevice records that origin delivered sender's to-device
// message messageID at now (unix ms) and reports whether it is new: a
// message seen before must not be delivered again.
func (tx *Tx) MarkInboundToDevice(origin, sender, messageID string, now int64) (bool, error) {
	k := append(append(append(append([]byte(origin), 0), sender...), 0), messageID...)
	b := tx.btx.Bucket(bucketInboundToDevice)
	if b.Get(k) != nil {
		return false, nil
	}
	return true, b.Put(k, u64(uint64(now)))
}

// PruneInboundToDevice forgets the to-device messages recorded as
// delivered before (Unix milliseconds), returning how many: a peer
// resends a message for as long as it retries the transaction, not
// forever.
func (tx *Tx) PruneInboundToDevice(before int64) (int, error) {
	return pruneOlder(tx.btx.Bucket(bucketInboundToDevice), before)
}
