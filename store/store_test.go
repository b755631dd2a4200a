package store_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth/store"
	"hearth/store/storetest"
)

func user(lp string) *store.User { return &store.User{Localpart: lp, CreatedTS: 1} }

// Many concurrent writers all commit, each exactly once, and a failing or
// panicking write fails alone: the writes batched with it still land.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := storetest.Open(t)
	var wg sync.WaitGroup
	errs := make([]error, 300)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(func(tx *store.Tx) error {
				if err := tx.CreateUser(user(fmt.Sprintf("u%03d", i))); err != nil {
					return err
				}
				switch i % 10 {
				case 3:
					return errors.New("refused")
				case 7:
					panic("bug in a write")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	var users []store.User
	if err := s.View(func(tx *store.Tx) (err error) { users, err = tx.Users(); return }); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, u := range users {
		have[u.Localpart] = true
	}
	for i, err := range errs {
		lp := fmt.Sprintf("u%03d", i)
		switch i % 10 {
		case 3, 7:
			if err == nil || have[lp] {
				t.Errorf("%s: failed write returned %v, stored %v", lp, err, have[lp])
			}
		default:
			if err != nil || !have[lp] {
				t.Errorf("%s: good write returned %v, stored %v", lp, err, have[lp])
			}
		}
	}
	if len(users) != 240 {
		t.Errorf("%d users stored, want 240", len(users))
	}
}

func TestCreateUserTwice(t *testing.T) {
	s := storetest.Open(t)
	if err := s.Update(func(tx *store.Tx) error { return tx.CreateUser(user("a")) }); err != nil {
		t.Fatal(err)
	}
	err := s.Update(func(tx *store.Tx) error { return tx.CreateUser(user("a")) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
}

// Deleting a device revokes its tokens; replacing tokens revokes the old.
func TestDeviceTokens(t *testing.T) {
	s := storetest.Open(t)
	a1, a2, r1 := []byte("access-1"), []byte("access-2"), []byte("refresh-1")
	err := s.Update(func(tx *store.Tx) error {
		if err := tx.CreateUser(user("a")); err != nil {
			return err
		}
		if err := tx.PutDevice(&store.Device{Localpart: "a", ID: "D1"}); err != nil {
			return err
		}
		return tx.SetDeviceTokens("a", "D1", a1, 0, r1)
	})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(hash []byte) error {
		return s.View(func(tx *store.Tx) error { _, err := tx.SessionByAccess(hash); return err })
	}
	if err := lookup(a1); err != nil {
		t.Fatalf("token 1: %v", err)
	}
	if err := s.Update(func(tx *store.Tx) error { return tx.SetDeviceTokens("a", "D1", a2, 5, nil) }); err != nil {
		t.Fatal(err)
	}
	if err := lookup(a1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replaced token still resolves: %v", err)
	}
	if err := s.View(func(tx *store.Tx) error { _, err := tx.SessionByRefresh(r1); return err }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replaced refresh token still resolves: %v", err)
	}
	if err := s.Update(func(tx *store.Tx) error { return tx.DeleteDevice("a", "D1") }); err != nil {
		t.Fatal(err)
	}
	if err := lookup(a2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted device's token still resolves: %v", err)
	}
}

// A device cannot exist without its user.
func TestDeviceNeedsUser(t *testing.T) {
	s := storetest.Open(t)
	err := s.Update(func(tx *store.Tx) error { return tx.PutDevice(&store.Device{Localpart: "ghost", ID: "D"}) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("device for unknown user: %v", err)
	}
}

// A second process (here: a second Open) is refused with ErrLocked, and a
// file from a newer schema is refused rather than misread.
func TestOpenRefusals(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(dir, 100*time.Millisecond); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	s.Close()

	db, err := bolt.Open(filepath.Join(dir, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("name_meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, store.SchemaVersion+1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(dir, time.Second); !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("open newer schema: %v", err)
	}
}

// Check finds a token whose device is gone.
func TestCheckFindsDanglingToken(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *store.Tx) error {
		if err := tx.CreateUser(user("a")); err != nil {
			return err
		}
		if err := tx.PutDevice(&store.Device{Localpart: "a", ID: "D"}); err != nil {
			return err
		}
		return tx.SetDeviceTokens("a", "D", []byte("h"), 0, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("consistent store: %v", err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("localpart_deviceid_device")).Delete([]byte("a\x00D"))
	})
	db.Close()
	s, err = store.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err == nil {
		t.Fatal("Check missed a token of a deleted device")
	}
}

func TestUpdateAfterClose(t *testing.T) {
	s, err := store.Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Update(func(tx *store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("update after close: %v", err)
	}
}

// BenchmarkUpdateParallel measures group commit: fsync'd writes per second
// from many writers at once.
func BenchmarkUpdateParallel(b *testing.B) {
	s := storetest.Open(b)
	var n sync.Mutex
	i := 0
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			i++
			lp := fmt.Sprintf("u%d", i)
			n.Unlock()
			if err := s.Update(func(tx *store.Tx) error { return tx.CreateUser(user(lp)) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateSerial measures a lone writer, which must not wait for a
// batch to fill.
func BenchmarkUpdateSerial(b *testing.B) {
	s := storetest.Open(b)
	for i := 0; b.Loop(); i++ {
		lp := fmt.Sprintf("u%d", i)
		if err := s.Update(func(tx *store.Tx) error { return tx.CreateUser(user(lp)) }); err != nil {
			b.Fatal(err)
		}
	}
}

// A delivered to-device message's ID is remembered until pruned: a
// resend before is refused, after it is new again; newer ones stay.
func TestInboundToDeviceDedupePruned(t *testing.T) {
	st := storetest.Open(t)
	mark := func(id string, at int64) bool {
		t.Helper()
		var isNew bool
		if err := st.Update(func(tx *store.Tx) (err error) {
			isNew, err = tx.MarkInboundToDevice("peer.example", "@x:peer.example", id, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return isNew
	}
	if !mark("old", 1000) || !mark("recent", 5000) || mark("old", 6000) {
		t.Fatal("a message's first delivery must be new and its resend not")
	}
	var n int
	if err := st.Update(func(tx *store.Tx) (err error) {
		n, err = tx.PruneInboundToDevice(2000)
		return err
	}); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	if !mark("old", 7000) || mark("recent", 7000) {
		t.Fatal("after pruning, the old message is new again and the recent one still known")
	}
}
