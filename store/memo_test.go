package store_test

import (
	"errors"
	"testing"

	"hearth/store"
	"hearth/store/storetest"
)

// AccessByHash reads through memos, yet every change to a token, its
// device or its user shows at once, in the next transaction: revoked
// tokens are refused, a rotated one works, the admin flag follows the
// user, and a write that rolls back leaves nothing behind.
func TestAccessByHashSeesEveryChange(t *testing.T) {
	s := storetest.Open(t)
	update := func(fn func(tx *store.Tx) error) {
		t.Helper()
		if err := s.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	access := func(hash string) (*store.Access, error) {
		var a *store.Access
		err := s.View(func(tx *store.Tx) (err error) { a, err = tx.AccessByHash([]byte(hash)); return })
		return a, err
	}
	mustAccess := func(hash string) *store.Access {
		t.Helper()
		a, err := access(hash)
		if err != nil {
			t.Fatalf("token %s: %v", hash, err)
		}
		return a
	}
	refused := func(hash, why string) {
		t.Helper()
		if a, err := access(hash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: token %s still grants %+v (%v)", why, hash, a, err)
		}
	}
	newDevice := func(id, accessHash string) {
		update(func(tx *store.Tx) error {
			if err := tx.PutDevice(&store.Device{Localpart: "alice", ID: id, CreatedTS: 1}); err != nil {
				return err
			}
			return tx.SetDeviceTokens("alice", id, []byte(accessHash), 0, []byte("r-"+accessHash))
		})
	}
	update(func(tx *store.Tx) error { return tx.CreateUser(user("alice")) })
	newDevice("D1", "t1")
	newDevice("D2", "t2")
	newDevice("D3", "t3")

	if a := mustAccess("t1"); a.Localpart != "alice" || a.DeviceID != "D1" || a.Admin {
		t.Fatalf("t1 grants %+v", a)
	}
	update(func(tx *store.Tx) error {
		u, err := tx.User("alice")
		if err != nil {
			return err
		}
		u.Admin = true
		return tx.PutUser(u)
	})
	if !mustAccess("t1").Admin {
		t.Fatal("admin flag not seen")
	}

	// A new token for the device: the old one stops at once.
	update(func(tx *store.Tx) error { return tx.SetDeviceTokens("alice", "D1", []byte("t1b"), 0, nil) })
	refused("t1", "replaced token")
	mustAccess("t1b")

	// A refresh: the new pair works, the old access token does not.
	mustAccess("t2")
	update(func(tx *store.Tx) error {
		return tx.RotateDeviceTokens("alice", "D2", []byte("r-t2"), []byte("t2b"), 5, []byte("r-t2b"))
	})
	refused("t2", "refreshed token")
	if a := mustAccess("t2b"); a.ExpiresTS != 5 || !a.PrevRefresh {
		t.Fatalf("refreshed token grants %+v", a)
	}
	update(func(tx *store.Tx) error { return tx.DropPrevRefresh("alice", "D2") })
	if mustAccess("t2b").PrevRefresh {
		t.Fatal("dropped previous refresh token still reported")
	}

	// Logout (one device), then all devices.
	mustAccess("t3")
	update(func(tx *store.Tx) error { return tx.DeleteDevice("alice", "D3") })
	refused("t3", "deleted device")
	update(func(tx *store.Tx) error { return tx.DeleteAllDevices("alice", "") })
	refused("t1b", "all devices deleted")
	refused("t2b", "all devices deleted")

	// A rolled-back write is never seen, even though the memo may have
	// decoded its records inside the transaction.
	newDevice("D4", "t4")
	boom := errors.New("boom")
	err := s.Update(func(tx *store.Tx) error {
		if err := tx.SetDeviceTokens("alice", "D4", []byte("t4b"), 0, nil); err != nil {
			return err
		}
		if _, err := tx.AccessByHash([]byte("t4b")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	refused("t4b", "rolled-back token")
	mustAccess("t4")
}

// A room record written by a transaction that rolls back is never read
// back from the memo, though the write remembered it decoded.
func TestRoomMemoIgnoresRolledBackWrites(t *testing.T) {
	s := storetest.Open(t)
	var nid uint64
	if err := s.Update(func(tx *store.Tx) error {
		r, err := tx.CreateRoom("!r:hs.test", "12")
		nid = r.NID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := s.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(nid)
		if err != nil {
			return err
		}
		r.Depth, r.Extremities = 7, append(r.Extremities, 9)
		if err := tx.PutRoom(r); err != nil {
			return err
		}
		if r, err := tx.RoomByNID(nid); err != nil || r.Depth != 7 {
			t.Errorf("inside the write: %+v %v", r, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := s.View(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(nid)
		if err == nil && (r.Depth != 0 || len(r.Extremities) != 0) {
			t.Errorf("rolled-back room read back: %+v", r)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
