package rooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"hearth/server/pdu"
	"hearth/store"
	"hearth/store/storetest"
)

// serviceWithRoom starts a room service on a fresh store, as server
// localhost, with a room creator made with preset.
func serviceWithRoom(t *testing.T, creator, preset string) (*store.Store, *Service, string) {
	t.Helper()
	st := storetest.Open(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := New(st, pdu.Signer{ServerName: "localhost", KeyID: "ed25519:t", Key: key}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	roomID, err := s.CreateRoom(&CreateRequest{Creator: creator, Preset: preset})
	if err != nil {
		t.Fatal(err)
	}
	return st, s, roomID
}

// The member cache follows a room's state event by event: after any run
// of joins, invites, leaves, kicks and bans (past the snapshots stored
// whole and past the cache's step bound), the members it gives are the
// ones a fresh read of the membership index gives.
func TestMemberCacheFollowsState(t *testing.T) {
	const alice = "@alice:localhost"
	st, s, roomID := serviceWithRoom(t, alice, "public_chat")
	check := func(step int) {
		t.Helper()
		err := st.View(func(tx *store.Tx) error {
			room, err := tx.RoomByID(roomID)
			if err != nil {
				return err
			}
			got, err := s.memberSets(tx, room)
			if err != nil {
				return err
			}
			want, err := readMembers(tx, room)
			if err != nil {
				return err
			}
			if !slices.Equal(got.users, want.users) || !slices.Equal(got.all, want.all) || !slices.Equal(got.servers, want.servers) {
				return fmt.Errorf("step %d: cache has joined %v, all %v, servers %v; the index has %v, %v, %v",
					step, got.users, got.all, got.servers, want.users, want.all, want.servers)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	changed := 0
	for step := range 400 {
		user := fmt.Sprintf("@u%d:localhost", rng.IntN(12))
		c := &MemberChange{Sender: user, Target: user}
		switch rng.IntN(5) {
		case 0:
			c.Membership = "join"
		case 1:
			c.Membership = "leave"
		case 2:
			c.Sender, c.Membership = alice, "invite"
		case 3:
			c.Sender, c.Membership = alice, "ban"
		case 4:
			c.Sender, c.Membership = alice, "leave" // a kick, or an unban
		}
		if _, err := s.ChangeMembership(roomID, c); err == nil {
			changed++
		}
		// Read after most changes, after a few at once now and then, and
		// once after more than the cache may follow.
		if step < 150 && rng.IntN(4) != 0 || step == 399 {
			check(step)
		}
	}
	if changed < 200 {
		t.Fatalf("only %d of 400 membership changes were allowed", changed)
	}
}

// Member sets read inside a write transaction are not cached: the
// transaction's snapshot may never be committed, and the next one made
// takes its number. A ghost's join in a transaction that fails must not
// show when a real join later gets that snapshot's number.
func TestMemberCacheSkipsUncommittedSnapshots(t *testing.T) {
	const alice, ghost, bob = "@alice:localhost", "@ghost:localhost", "@bob:localhost"
	st, s, roomID := serviceWithRoom(t, alice, "public_chat")
	var err error
	members := func(tx *store.Tx) []string {
		t.Helper()
		room, err := tx.RoomByID(roomID)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.memberSets(tx, room)
		if err != nil {
			t.Fatal(err)
		}
		return m.users
	}
	_ = st.View(func(tx *store.Tx) error { members(tx); return nil }) // cached at the current snapshot
	errRollBack := fmt.Errorf("roll back")
	err = st.Update(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		sk := ghost
		js := fmt.Sprintf(`{"type":"m.room.member","state_key":%q,"sender":%q,"room_id":%q,"content":{"membership":"join"}}`, ghost, ghost, roomID)
		if _, err := tx.AppendEvent(room, &store.NewEvent{EventID: "$ghost", JSON: []byte(js), Depth: 99, Type: "m.room.member", StateKey: &sk, Membership: "join"}); err != nil {
			return err
		}
		if got := members(tx); !slices.Contains(got, ghost) {
			t.Errorf("inside the transaction the ghost is not joined: %v", got)
		}
		return errRollBack
	})
	if err != errRollBack {
		t.Fatalf("the transaction ended with %v", err)
	}
	// bob's join takes the failed snapshot's number, with nothing
	// reading the room's members in between (a remote event's commit).
	err = st.Update(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		sk := bob
		js := fmt.Sprintf(`{"type":"m.room.member","state_key":%q,"sender":%q,"room_id":%q,"content":{"membership":"join"}}`, bob, bob, roomID)
		_, err = tx.AppendEvent(room, &store.NewEvent{EventID: "$bob", JSON: []byte(js), Depth: 99, Type: "m.room.member", StateKey: &sk, Membership: "join"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		got, want := members(tx), func() []string { m, _ := readMembers(tx, room); return m.users }()
		if !slices.Equal(got, want) {
			t.Errorf("the cache has %v joined, the index %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
