package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Check verifies the file's page structure and the store's own invariants:
// every device belongs to an existing user, every token hash resolves to a
// device that still holds it, and vice versa; every alias and published
// room belongs to a known room. It returns every problem found, joined;
// nil means consistent.
func (s *Store) Check() error {
	return s.View(func(tx *Tx) error {
		var errs []error
		for err := range tx.btx.Check() {
			errs = append(errs, err)
		}
		users := tx.btx.Bucket(bucketUsers)
		_ = tx.btx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d Device
			if err := json.Unmarshal(v, &d); err != nil {
				errs = append(errs, fmt.Errorf("device %q: %w", k, err))
				return nil
			}
			if users.Get([]byte(d.Localpart)) == nil {
				errs = append(errs, fmt.Errorf("device %q of unknown user", k))
			}
			if d.AccessHash != nil && !tx.sessionPoints(bucketAccess, d.AccessHash, &d) {
				errs = append(errs, fmt.Errorf("device %q: access token hash does not resolve to it", k))
			}
			for _, h := range [][]byte{d.RefreshHash, d.PrevRefreshHash} {
				if h != nil && !tx.sessionPoints(bucketRefresh, h, &d) {
					errs = append(errs, fmt.Errorf("device %q: refresh token hash does not resolve to it", k))
				}
			}
			return nil
		})
		for _, b := range [][]byte{bucketAccess, bucketRefresh} {
			_ = tx.btx.Bucket(b).ForEach(func(k, v []byte) error {
				var sess Session
				if err := json.Unmarshal(v, &sess); err != nil {
					errs = append(errs, fmt.Errorf("%s entry: %w", b, err))
					return nil
				}
				d, err := tx.Device(sess.Localpart, sess.DeviceID)
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("%s entry for missing device %s/%s", b, sess.Localpart, sess.DeviceID))
				case bytes.Equal(b, bucketAccess) && !bytes.Equal(d.AccessHash, k),
					bytes.Equal(b, bucketRefresh) && !bytes.Equal(d.RefreshHash, k) && !bytes.Equal(d.PrevRefreshHash, k):
					errs = append(errs, fmt.Errorf("%s entry for %s/%s is not the device's current token", b, sess.Localpart, sess.DeviceID))
				}
				return nil
			})
		}
		errs = append(errs, tx.checkDirectory()...)
		errs = append(errs, tx.checkRelations()...)
		errs = append(errs, tx.checkBackups()...)
		errs = append(errs, tx.checkKeys()...)
		errs = append(errs, tx.checkRoomState()...)
		errs = append(errs, tx.checkEventIDs()...)
		return errors.Join(errs...)
	})
}

// checkEventIDs checks that every event record that keeps its event ID
// is where that ID's index entry points.
func (tx *Tx) checkEventIDs() []error {
	var errs []error
	ids := tx.btx.Bucket(bucketEventIDs)
	_ = tx.btx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) < eventHeader || v[16]&recordHasID == 0 {
			return nil
		}
		pos := binary.BigEndian.Uint64(k)
		_, id, _, err := splitRecord(pos, v)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !bytes.Equal(ids.Get([]byte(id)), k):
			errs = append(errs, fmt.Errorf("event %d keeps ID %s, which does not index it", pos, id))
		}
		return nil
	})
	return errs
}

func (tx *Tx) sessionPoints(bucket, hash []byte, d *Device) bool {
	s := new(Session)
	if err := tx.getJSON(bucket, hash, s); err != nil {
		return false
	}
	return s.Localpart == d.Localpart && s.DeviceID == d.ID
}

// checkRoomState checks that every room's materialised current state is
// the state of its current snapshot.
func (tx *Tx) checkRoomState() []error {
	var errs []error
	_ = tx.Rooms(func(r *Room) error {
		snap, err := tx.StateAt(r.CurrentSnap)
		if err != nil {
			errs = append(errs, fmt.Errorf("room %s: %w", r.RoomID, err))
			return nil
		}
		cur, err := tx.CurrentState(r.NID, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("room %s: %w", r.RoomID, err))
			return nil
		}
		if len(cur) != len(snap) {
			errs = append(errs, fmt.Errorf("room %s: current state has %d entries, its snapshot %d", r.RoomID, len(cur), len(snap)))
		}
		for sk, pos := range snap {
			if cur[sk] != pos {
				errs = append(errs, fmt.Errorf("room %s: current state of %v is %d, its snapshot says %d", r.RoomID, sk, cur[sk], pos))
			}
		}
		return nil
	})
	return errs
}
