package rooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"testing"

	"hearth/server/pdu"
	"hearth/store"
	"hearth/store/storetest"
)

// The writers' cache of parsed events serves an event only while its
// stored record is unchanged: once a redaction rewrites the record, the
// next send builds on the redacted event, never on the cached original.
func TestHeadCacheFollowsRewrites(t *testing.T) {
	st, s, roomID := serviceWithRoom(t, "@alice:localhost", "private_chat")
	id, err := s.Send(roomID, &Draft{Sender: "@alice:localhost", Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"secret"}`)})
	if err != nil {
		t.Fatal(err)
	}

	var version string
	var pos uint64
	read := func() *pdu.Event {
		t.Helper()
		var ev *pdu.Event
		err := st.View(func(tx *store.Tx) (err error) {
			room, err := tx.RoomByID(roomID)
			if err != nil {
				return err
			}
			version = room.Version
			if pos, err = tx.EventPos(id); err != nil {
				return err
			}
			ev, err = s.heads.event(tx, version, pos)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	first := read()
	if first.ID() != id || string(first.Content()) == "{}" {
		t.Fatalf("cached event %s %s", first.ID(), first.Content())
	}
	if read() != first {
		t.Fatal("an unchanged event was parsed again")
	}

	red, err := first.Redact()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error { return tx.ReplaceEventJSON(pos, red.JSON(), store.FlagRedacted) }); err != nil {
		t.Fatal(err)
	}
	got := read()
	if !got.Redacted() || string(got.Content()) != "{}" || got.ID() != id {
		t.Fatalf("after the rewrite the cache served %s redacted=%v %s", got.ID(), got.Redacted(), got.Content())
	}
}

// The member list kept for waking syncs follows every membership change
// at once, messages in between notwithstanding.
func TestMemberIDsFollowMembership(t *testing.T) {
	st := storetest.Open(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := New(st, pdu.Signer{ServerName: "localhost", KeyID: "ed25519:t", Key: key}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	roomID, err := s.CreateRoom(&CreateRequest{Creator: "@alice:localhost", Preset: PresetPublic})
	if err != nil {
		t.Fatal(err)
	}
	want := func(ids ...string) {
		t.Helper()
		got, err := s.MemberIDs(roomID)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Fatalf("members %v, want %v", got, ids)
		}
	}
	send := func() {
		t.Helper()
		if _, err := s.Send(roomID, &Draft{Sender: "@alice:localhost", Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	want("@alice:localhost")
	send()
	want("@alice:localhost")
	if _, err := s.Join(roomID, &MemberChange{Target: "@bob:localhost", Sender: "@bob:localhost"}); err != nil {
		t.Fatal(err)
	}
	want("@alice:localhost", "@bob:localhost")
	send()
	if _, err := s.ChangeMembership(roomID, &MemberChange{Target: "@carol:localhost", Sender: "@alice:localhost", Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	want("@alice:localhost", "@bob:localhost", "@carol:localhost")
}
