package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"hearth/store"
)

// The cache of other servers' users' device lists. A user's list is
// fetched whole (GET /user/devices, a "resync") the first time it is
// needed and then kept current by their server's m.device_list_update
// EDUs, each naming the updates it follows (prev_id): an update that
// follows on from what is cached is applied, and one that does not
// means an update was lost, so the list is fetched whole again. Every
// change enters the device-list stream, so clients sharing a room with
// the user see them in their sync's device_lists.changed.

// resyncTimeout bounds one fetch of a remote user's device list.
const resyncTimeout = 30 * time.Second

// recentUpdates is how many stream IDs of applied updates are kept to
// recognise the prev_id of the next ones.
const recentUpdates = 16

// UserDevices is the answer of GET /_matrix/federation/v1/user/devices/{userId}.
type UserDevices struct {
	UserID         string          `json:"user_id"`
	StreamID       int64           `json:"stream_id"`
	Devices        []UserDevice    `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevice is one device of a UserDevices answer.
type UserDevice struct {
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	Keys        json.RawMessage `json:"keys"`
}

// DeviceListUpdate is the content of an m.device_list_update EDU.
type DeviceListUpdate struct {
	UserID      string          `json:"user_id"`
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	StreamID    int64           `json:"stream_id"`
	PrevID      []int64         `json:"prev_id,omitempty"`
	Deleted     bool            `json:"deleted,omitempty"`
	Keys        json.RawMessage `json:"keys,omitempty"`
	// JoinAnnouncement marks the updates a Hearth server sends a server
	// its user newly shares a room with, on the join: they restate the
	// devices, they do not change them. Other servers ignore the field.
	JoinAnnouncement bool `json:"io.hearth.join_announcement,omitempty"`
}

// SigningKeyUpdate is the content of an m.signing_key_update EDU.
type SigningKeyUpdate struct {
	UserID         string          `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

type userLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

// lockUser serialises updates and resyncs of one remote user's list.
func (s *Service) lockUser(userID string) func() {
	s.userMu.Lock()
	l := s.userLocks[userID]
	if l == nil {
		l = &userLock{}
		s.userLocks[userID] = l
	}
	l.refs++
	s.userMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.userMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.userLocks, userID)
		}
		s.userMu.Unlock()
	}
}

// ApplyDeviceListUpdate applies an m.device_list_update EDU from the
// user's own server (the caller checks that) to the cache. Updates for
// users who share no room with ours are ignored, as Synapse does; an
// update that does not follow on from the cache starts a resync.
func (s *Service) ApplyDeviceListUpdate(ctx context.Context, u *DeviceListUpdate) error {
	if u.DeviceID == "" {
		return errors.New("device_list_update without a device_id")
	}
	if !u.Deleted && len(u.Keys) > 0 && string(u.Keys) != "null" && !keysOf(u.Keys, u.UserID, u.DeviceID) {
		return fmt.Errorf("device_list_update: keys are not %s's device %s's", u.UserID, u.DeviceID)
	}
	if !s.sharesRoomWithLocal(u.UserID) {
		return nil
	}
	unlock := s.lockUser(u.UserID)
	defer unlock()
	var pos uint64
	needResync := false
	err := s.store.Update(func(tx *store.Tx) error {
		pos, needResync = 0, false
		l, ok := s.validCache(tx, u.UserID)
		if !ok {
			needResync = true // none, or updates may have been missed
			return nil
		}
		if u.StreamID <= l.StreamID || slices.Contains(l.Recent, u.StreamID) {
			return nil // seen, or older than what the last resync fetched
		}
		for _, p := range u.PrevID {
			if p != l.StreamID && !slices.Contains(l.Recent, p) {
				needResync = true // an update was lost
				return nil
			}
		}
		var err error
		if u.Deleted {
			err = tx.DeleteRemoteDevice(u.UserID, u.DeviceID)
		} else {
			d := &store.RemoteDevice{DeviceID: u.DeviceID, DisplayName: u.DisplayName}
			if len(u.Keys) > 0 && string(u.Keys) != "null" {
				d.Keys = u.Keys
			}
			err = tx.PutRemoteDevice(u.UserID, d)
		}
		if err != nil {
			return err
		}
		l.StreamID = u.StreamID
		l.Recent = append(l.Recent, u.StreamID)
		if len(l.Recent) > recentUpdates {
			l.Recent = l.Recent[len(l.Recent)-recentUpdates:]
		}
		if err := tx.PutRemoteDeviceList(u.UserID, l); err != nil {
			return err
		}
		pos, err = tx.RecordDeviceListChange(u.UserID)
		return err
	})
	if err != nil {
		return err
	}
	if pos != 0 {
		s.notify(pos, u.UserID)
	}
	if needResync {
		// A join announcement changes nothing clients hold (the join
		// itself listed the user as changed) unless the list fetched is
		// newer than it; any other update changed devices.
		after := int64(-1)
		if u.JoinAnnouncement {
			after = u.StreamID
		}
		return s.resyncLocked(ctx, u.UserID, after)
	}
	return nil
}

// ApplySigningKeyUpdate applies an m.signing_key_update EDU from the
// user's own server (the caller checks that): the cached cross-signing
// keys change, and clients sharing a room learn the user's keys changed.
func (s *Service) ApplySigningKeyUpdate(u *SigningKeyUpdate) error {
	for _, k := range []json.RawMessage{u.MasterKey, u.SelfSigningKey} {
		if len(k) > 0 && string(k) != "null" && !keysOf(k, u.UserID, "") {
			return fmt.Errorf("signing_key_update: a key is not %s's", u.UserID)
		}
	}
	if !s.sharesRoomWithLocal(u.UserID) {
		return nil
	}
	unlock := s.lockUser(u.UserID)
	defer unlock()
	var pos uint64
	err := s.store.Update(func(tx *store.Tx) error {
		var err error
		if l, ok := s.validCache(tx, u.UserID); ok {
			if len(u.MasterKey) > 0 && string(u.MasterKey) != "null" {
				l.MasterKey = u.MasterKey
			}
			if len(u.SelfSigningKey) > 0 && string(u.SelfSigningKey) != "null" {
				l.SelfSigningKey = u.SelfSigningKey
			}
			if err := tx.PutRemoteDeviceList(u.UserID, l); err != nil {
				return err
			}
		}
		// Not cached (or not current): queries ask the server, and find
		// the new keys there.
		pos, err = tx.RecordDeviceListChange(u.UserID)
		return err
	})
	if err == nil {
		s.notify(pos, u.UserID)
	}
	return err
}

// resync fetches a remote user's whole device list into the cache.
func (s *Service) resync(ctx context.Context, userID string) error {
	unlock := s.lockUser(userID)
	defer unlock()
	if s.cached(userID) {
		return nil // current, fetched by another request meanwhile
	}
	return s.resyncLocked(ctx, userID, math.MaxInt64)
}

// resyncLocked is resync with the user's lock held. On failure the cache
// entry is dropped, so that queries ask the server until the next update
// resyncs again. A change is recorded (clients told to fetch the keys
// again) when a list was cached before, or when the list fetched is newer
// than changedAfter (a stream ID).
func (s *Service) resyncLocked(ctx context.Context, userID string, changedAfter int64) error {
	server, ok := splitUserID(userID)
	if !ok {
		return fmt.Errorf("malformed user ID %q", userID)
	}
	if s.Federation == nil {
		return errors.New("federation is not enabled")
	}
	ctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	var got UserDevices
	fetchErr := s.Federation(ctx, "GET", server, userDevicesURI(userID), nil, &got)
	if fetchErr == nil && got.UserID != userID {
		fetchErr = fmt.Errorf("user/devices for %s answered for %q", userID, got.UserID)
	}
	var pos uint64
	err := s.store.Update(func(tx *store.Tx) error {
		pos = 0
		if fetchErr != nil {
			if _, err := tx.RemoteDeviceList(userID); err != nil {
				return nil // nothing cached to distrust
			}
			if err := tx.DropRemoteDeviceList(userID); err != nil {
				return err
			}
			// Clients must fetch the keys again: from the server, now.
			var err error
			pos, err = tx.RecordDeviceListChange(userID)
			return err
		}
		// A list cached before may be in clients' hands: they must fetch
		// it again. A first fetch for a query, or for a join
		// announcement, changes nothing they hold (the join already
		// listed the user as changed), so it records no change, unless
		// it found changes made since.
		at := tx.LatestPos()
		if _, err := tx.RemoteDeviceList(userID); err == nil || got.StreamID > changedAfter {
			if pos, err = tx.RecordDeviceListChange(userID); err != nil {
				return err
			}
			at = pos
		}
		l := &store.RemoteDeviceList{StreamID: got.StreamID, Recent: []int64{got.StreamID}, Pos: at}
		if keysOf(got.MasterKey, userID, "") {
			l.MasterKey = got.MasterKey
		}
		if keysOf(got.SelfSigningKey, userID, "") {
			l.SelfSigningKey = got.SelfSigningKey
		}
		var devices []store.RemoteDevice
		for _, d := range got.Devices {
			if d.DeviceID == "" || !keysOf(d.Keys, userID, d.DeviceID) {
				continue
			}
			devices = append(devices, store.RemoteDevice{DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: d.Keys})
		}
		return tx.ReplaceRemoteDevices(userID, l, devices)
	})
	if err != nil {
		return err
	}
	if pos != 0 {
		s.notify(pos, userID)
	}
	return fetchErr
}

// cached reports whether a remote user's device list is cached and
// current.
func (s *Service) cached(userID string) bool {
	found := false
	_ = s.store.View(func(tx *store.Tx) error {
		_, found = s.validCache(tx, userID)
		return nil
	})
	return found
}

// addCached adds a remote user's cached keys, if current, (the devices of want, all
// for none) to out, and reports whether the cache had the user.
func (s *Service) addCached(out *FederatedQueryResp, userID string, want []string) bool {
	found := false
	_ = s.store.View(func(tx *store.Tx) error {
		l, ok := s.validCache(tx, userID)
		if !ok {
			return nil
		}
		devices, err := tx.RemoteDevices(userID)
		if err != nil {
			return err
		}
		found = true
		devs := map[string]json.RawMessage{}
		for _, d := range devices {
			if len(d.Keys) == 0 || (len(want) > 0 && !slices.Contains(want, d.DeviceID)) {
				continue
			}
			var unsigned map[string]any
			if d.DisplayName != "" {
				unsigned = map[string]any{"device_display_name": d.DisplayName}
			}
			devs[d.DeviceID] = withSignatures(d.Keys, nil, unsigned)
		}
		out.DeviceKeys[userID] = devs
		if l.MasterKey != nil {
			out.MasterKeys[userID] = l.MasterKey
		}
		if l.SelfSigningKey != nil {
			out.SelfSigningKeys[userID] = l.SelfSigningKey
		}
		return nil
	})
	return found
}
