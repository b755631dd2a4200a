package federation_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
)

// leftAs returns the member event of userID in the leave section of a
// sync response for a room, nil if there is none.
func leftAs(resp map[string]any, roomID, userID string) map[string]any {
	room, _ := get(resp, "rooms", "leave", roomID).(map[string]any)
	for _, part := range []string{"timeline", "state"} {
		evs, _ := get(room, part, "events").([]any)
		for _, e := range evs {
			ev, _ := e.(map[string]any)
			if ev["type"] == "m.room.member" && ev["state_key"] == userID && get(ev, "content", "membership") == "leave" {
				return ev
			}
		}
	}
	return nil
}

func invitedTo(c *servertest.Client, roomID string) bool {
	return section(syncRooms(c), "invite", roomID) != nil
}

// An invite to a room B is in arrives over /invite before the inviting
// server's /send of it (here it never sends it): B takes it into the
// room at once, so the invitee can join or reject it through B, which
// needs their invite in the room's state.
func TestInviteToRoomWeAreIn(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	bob2 := b.Register(t, "bob2", "pw-bob2")
	bob3 := b.Register(t, "bob3", "pw-bob3")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")

	// A's invites as A would build them, signed with A's key, sent only
	// through /invite.
	f := newForger(t, b, a, roomID)
	invite := func(userID string) {
		t.Helper()
		ev := f.build(alice.UserID, "m.room.member", &userID, map[string]any{"membership": "invite"})
		in := map[string]any{"event": json.RawMessage(ev.JSON()), "room_version": f.head().version, "invite_room_state": []any{}}
		var out struct {
			Event json.RawMessage `json:"event"`
		}
		uri := "/_matrix/federation/v2/invite/" + url.PathEscape(roomID) + "/" + url.PathEscape(ev.ID())
		if err := a.Federation().Client().Call(context.Background(), "PUT", b.ServerName(), uri, in, &out); err != nil {
			t.Fatalf("invite of %s: %v", userID, err)
		}
	}

	invite(bob2.UserID)
	if got := membership(bob, roomID, bob2.UserID); got != "invite" {
		t.Errorf("bob sees bob2 as %q in the room's state, want invite", got)
	}
	bob2.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob2.UserID, "join")

	invite(bob3.UserID)
	bob3.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
	waitMembership(t, alice, roomID, bob3.UserID, "leave")
	sameState(t, roomID, alice, bob)
}

// The inviter rescinds an invite of a user of a server not in the room
// (a kick of the invitee): the invitee's server takes the leave, and the
// invitee sees it in their sync. A kick by anyone else cannot be checked
// without the room's state, and leaves the invite as it was.
func TestInviteRescinded(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	alice2 := a.Register(t, "alice2", "pw-alice2")
	bob := b.Register(t, "bob", "pw-bob")
	kick := func(roomID string) {
		alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "rescinded"})
	}

	shared := sharedRoom(t, a, alice, bob) // to know when B has what A sent before

	rescinded := createRoom(t, alice, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) { return invitedTo(bob, rescinded), "bob never saw the invite" })
	since := syncToken(bob)
	kick(rescinded)
	syncUntil(t, bob, since, "bob's leave", func(resp map[string]any) bool { return leftAs(resp, rescinded, bob.UserID) != nil })
	if invitedTo(bob, rescinded) {
		t.Errorf("bob is still invited after the inviter rescinded it")
	}

	other := createRoom(t, alice, map[string]any{"preset": "private_chat", "invite": []string{alice2.UserID}})
	alice2.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(other)+"/join", map[string]any{})
	alice2.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(other)+"/invite", map[string]any{"user_id": bob.UserID})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) { return invitedTo(bob, other), "bob never saw alice2's invite" })
	kick(other)
	send(alice, shared, "after the kick")
	waitBodies(t, bob, shared, "after the kick")
	if !invitedTo(bob, other) {
		t.Errorf("a kick by someone other than the inviter withdrew bob's invite")
	}
}

// The invitee rejects an invite when no server can take the leave (the
// inviter has left the room, so its server is not in it): the invite is
// withdrawn here all the same, with a leave the invitee's sync shows.
func TestRejectInviteToEmptyRoom(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := createRoom(t, alice, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) { return invitedTo(bob, roomID), "bob never saw the invite" })
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})

	since := syncToken(bob)
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
	resp, _ := syncUntil(t, bob, since, "bob's leave", func(resp map[string]any) bool { return leftAs(resp, roomID, bob.UserID) != nil })
	if ev := leftAs(resp, roomID, bob.UserID); ev["sender"] != bob.UserID {
		t.Errorf("bob's leave: %v", ev)
	}
	if invitedTo(bob, roomID) {
		t.Errorf("bob is still invited after rejecting the invite")
	}
}
