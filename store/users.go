package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// User is a local account.
type User struct {
	Localpart    string `json:"localpart"`
	PasswordHash string `json:"password_hash,omitempty"` // argon2id PHC string; "" means no password login
	Admin        bool   `json:"admin,omitempty"`
	Deactivated  bool   `json:"deactivated,omitempty"`
	CreatedTS    int64  `json:"created_ts"` // milliseconds since the epoch
	DisplayName  string `json:"displayname,omitempty"`
	AvatarURL    string `json:"avatar_url,omitempty"`
}

// User returns the account with the given localpart, or ErrNotFound.
func (tx *Tx) User(localpart string) (*User, error) {
	var u User
	if err := tx.getJSON(bucketUsers, []byte(localpart), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser stores a new account; ErrExists if the localpart is taken
// (deactivated accounts keep their localpart).
func (tx *Tx) CreateUser(u *User) error {
	if tx.btx.Bucket(bucketUsers).Get([]byte(u.Localpart)) != nil {
		return ErrExists
	}
	return tx.putJSON(bucketUsers, []byte(u.Localpart), u)
}

// PutUser overwrites an existing account.
func (tx *Tx) PutUser(u *User) error {
	if tx.btx.Bucket(bucketUsers).Get([]byte(u.Localpart)) == nil {
		return ErrNotFound
	}
	return tx.putJSON(bucketUsers, []byte(u.Localpart), u)
}

// Users returns every account in localpart order.
func (tx *Tx) Users() ([]User, error) {
	var out []User
	err := tx.btx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("store: decode user %q: %w", k, err)
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// UserCount returns how many accounts exist, deactivated ones included.
func (tx *Tx) UserCount() int {
	return tx.btx.Bucket(bucketUsers).Stats().KeyN
}

// Device is one login of a user: a device ID with at most one access token
// and one refresh token.
type Device struct {
	Localpart   string `json:"localpart"`
	ID          string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	CreatedTS   int64  `json:"created_ts"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	// AccessHash and RefreshHash are SHA-256 digests of the device's current
	// tokens, kept so that deleting the device revokes them.
	AccessHash  []byte `json:"access_hash,omitempty"`
	RefreshHash []byte `json:"refresh_hash,omitempty"`
	// PrevRefreshHash is the refresh token the current pair was made from.
	// The spec keeps it valid until the new pair is first used, so that a
	// client that lost the refresh response can repeat the refresh.
	PrevRefreshHash []byte `json:"prev_refresh_hash,omitempty"`
}

// Session is what a token hash resolves to.
type Session struct {
	Localpart string `json:"localpart"`
	DeviceID  string `json:"device_id"`
	// ExpiresTS is when an access token stops working (ms since the epoch);
	// 0 means never. Unused for refresh tokens.
	ExpiresTS int64 `json:"expires_ts,omitempty"`
}

func deviceKey(localpart, deviceID string) []byte {
	return append(append([]byte(localpart), 0), deviceID...)
}

// Device returns one device of a user, or ErrNotFound.
func (tx *Tx) Device(localpart, deviceID string) (*Device, error) {
	var d Device
	if err := tx.getJSON(bucketDevices, deviceKey(localpart, deviceID), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// PutDevice creates or overwrites a device record; a new device is a
// device-list change. Tokens are set with SetDeviceTokens, never by
// editing the hashes here.
func (tx *Tx) PutDevice(d *Device) error {
	if tx.btx.Bucket(bucketUsers).Get([]byte(d.Localpart)) == nil {
		return fmt.Errorf("store: device for unknown user %q: %w", d.Localpart, ErrNotFound)
	}
	if tx.btx.Bucket(bucketDevices).Get(deviceKey(d.Localpart, d.ID)) == nil {
		// A new device is a device-list change.
		if _, err := tx.RecordDeviceListChange(tx.localUserID(d.Localpart)); err != nil {
			return err
		}
	}
	return tx.putJSON(bucketDevices, deviceKey(d.Localpart, d.ID), d)
}

// Devices returns all devices of a user in device ID order.
func (tx *Tx) Devices(localpart string) ([]Device, error) {
	prefix := append([]byte(localpart), 0)
	var out []Device
	c := tx.btx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var d Device
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("store: decode device %q: %w", k, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// DeleteDevice removes a device, revokes its tokens, deletes its
// encryption keys and records a device-list change. Deleting a device
// that does not exist returns ErrNotFound.
func (tx *Tx) DeleteDevice(localpart, deviceID string) error {
	d, err := tx.Device(localpart, deviceID)
	if err != nil {
		return err
	}
	if err := tx.revokeTokens(d); err != nil {
		return err
	}
	if _, err := tx.AckToDevice(localpart, deviceID, ^uint64(0)); err != nil {
		return err // messages for a device that is gone would wait forever
	}
	// Its keys go with it, and those who encrypt for it must learn it is
	// gone: a device-list change.
	if err := tx.deleteDeviceKeys(localpart, deviceID); err != nil {
		return err
	}
	if _, err := tx.RecordDeviceListChange(tx.localUserID(localpart)); err != nil {
		return err
	}
	return tx.btx.Bucket(bucketDevices).Delete(deviceKey(localpart, deviceID))
}

func (tx *Tx) revokeTokens(d *Device) error {
	if d.AccessHash != nil {
		if err := tx.btx.Bucket(bucketAccess).Delete(d.AccessHash); err != nil {
			return err
		}
	}
	for _, h := range [][]byte{d.RefreshHash, d.PrevRefreshHash} {
		if h != nil {
			if err := tx.btx.Bucket(bucketRefresh).Delete(h); err != nil {
				return err
			}
		}
	}
	d.AccessHash, d.RefreshHash, d.PrevRefreshHash = nil, nil, nil
	return nil
}

// RotateDeviceTokens is a refresh: usedRefresh (the device's current
// refresh token, or its previous one when a refresh is repeated) is traded
// for a new access and refresh token. The refresh token the new pair is
// made from stays valid until DropPrevRefresh, so a lost response can be
// retried; whatever the device held besides it is revoked.
func (tx *Tx) RotateDeviceTokens(localpart, deviceID string, usedRefresh, accessHash []byte, expiresTS int64, refreshHash []byte) error {
	d, err := tx.Device(localpart, deviceID)
	if err != nil {
		return err
	}
	if !bytes.Equal(usedRefresh, d.RefreshHash) && !bytes.Equal(usedRefresh, d.PrevRefreshHash) {
		return ErrNotFound
	}
	if d.AccessHash != nil {
		if err := tx.btx.Bucket(bucketAccess).Delete(d.AccessHash); err != nil {
			return err
		}
	}
	for _, h := range [][]byte{d.RefreshHash, d.PrevRefreshHash} {
		if h != nil && !bytes.Equal(h, usedRefresh) {
			if err := tx.btx.Bucket(bucketRefresh).Delete(h); err != nil {
				return err
			}
		}
	}
	if err := tx.putJSON(bucketAccess, accessHash, &Session{Localpart: localpart, DeviceID: deviceID, ExpiresTS: expiresTS}); err != nil {
		return err
	}
	if err := tx.putJSON(bucketRefresh, refreshHash, &Session{Localpart: localpart, DeviceID: deviceID}); err != nil {
		return err
	}
	d.AccessHash, d.RefreshHash, d.PrevRefreshHash = accessHash, refreshHash, usedRefresh
	return tx.putJSON(bucketDevices, deviceKey(localpart, deviceID), d)
}

// DropPrevRefresh revokes a device's previous refresh token: its
// successor has been used, so a retry is no longer needed.
func (tx *Tx) DropPrevRefresh(localpart, deviceID string) error {
	d, err := tx.Device(localpart, deviceID)
	if err != nil || d.PrevRefreshHash == nil {
		return err
	}
	if err := tx.btx.Bucket(bucketRefresh).Delete(d.PrevRefreshHash); err != nil {
		return err
	}
	d.PrevRefreshHash = nil
	return tx.putJSON(bucketDevices, deviceKey(localpart, deviceID), d)
}

// SetDeviceTokens replaces the tokens of an existing device: the old ones
// stop working in the same transaction. refreshHash may be nil, and
// expiresTS 0 for an access token that never expires.
func (tx *Tx) SetDeviceTokens(localpart, deviceID string, accessHash []byte, expiresTS int64, refreshHash []byte) error {
	d, err := tx.Device(localpart, deviceID)
	if err != nil {
		return err
	}
	if err := tx.revokeTokens(d); err != nil {
		return err
	}
	s := &Session{Localpart: localpart, DeviceID: deviceID, ExpiresTS: expiresTS}
	if err := tx.putJSON(bucketAccess, accessHash, s); err != nil {
		return err
	}
	d.AccessHash = accessHash
	if refreshHash != nil {
		if err := tx.putJSON(bucketRefresh, refreshHash, &Session{Localpart: localpart, DeviceID: deviceID}); err != nil {
			return err
		}
		d.RefreshHash = refreshHash
	}
	return tx.putJSON(bucketDevices, deviceKey(localpart, deviceID), d)
}

// SessionByAccess resolves the hash of an access token, or ErrNotFound.
func (tx *Tx) SessionByAccess(hash []byte) (*Session, error) {
	var s Session
	if err := tx.getJSON(bucketAccess, hash, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SessionByRefresh resolves the hash of a refresh token, or ErrNotFound.
func (tx *Tx) SessionByRefresh(hash []byte) (*Session, error) {
	var s Session
	if err := tx.getJSON(bucketRefresh, hash, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteAllDevices removes every device of a user except keep (which may
// be "") and revokes their tokens.
func (tx *Tx) DeleteAllDevices(localpart, keep string) error {
	devs, err := tx.Devices(localpart)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if d.ID == keep {
			continue
		}
		if err := tx.DeleteDevice(localpart, d.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// Access is what an access token grants, as authentication needs it.
type Access struct {
	Localpart, DeviceID string
	ExpiresTS           int64 // 0: never
	Admin               bool
	LastSeenTS          int64
	LastSeenIP          string
	// PrevRefresh: the device still holds the refresh token its current
	// pair was made from (see RotateDeviceTokens).
	PrevRefresh bool
}

// AccessByHash resolves the hash of an access token to its session, its
// user and its device, or ErrNotFound. It runs on every authenticated
// request, so the records are decoded through the store's memos.
func (tx *Tx) AccessByHash(hash []byte) (*Access, error) {
	s, err := getMemo(tx, &tx.memos.sessions, bucketAccess, hash)
	if err != nil {
		return nil, err
	}
	u, err := getMemo(tx, &tx.memos.users, bucketUsers, []byte(s.Localpart))
	if err != nil {
		return nil, err
	}
	d, err := getMemo(tx, &tx.memos.devices, bucketDevices, deviceKey(s.Localpart, s.DeviceID))
	if err != nil {
		return nil, err
	}
	return &Access{
		Localpart: s.Localpart, DeviceID: s.DeviceID, ExpiresTS: s.ExpiresTS, Admin: u.Admin,
		LastSeenTS: d.LastSeenTS, LastSeenIP: d.LastSeenIP, PrevRefresh: d.PrevRefreshHash != nil,
	}, nil
}
