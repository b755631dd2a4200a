package federation_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
	"hearth/store"
)

// syncRooms returns the rooms section of a full /sync.
func syncRooms(c *servertest.Client) map[string]any {
	r := c.Do("GET", "/_matrix/client/v3/sync?timeout=0", nil)
	rooms, _ := r.JSON["rooms"].(map[string]any)
	return rooms
}

func section(rooms map[string]any, name, roomID string) map[string]any {
	s, _ := rooms[name].(map[string]any)
	room, _ := s[roomID].(map[string]any)
	return room
}

func membership(c *servertest.Client, roomID, userID string) string {
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.member/"+url.PathEscape(userID), nil)
	return r.Str("membership")
}

func waitMembership(t *testing.T, c *servertest.Client, roomID, userID, want string) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		got := membership(c, roomID, userID)
		return got == want, fmt.Sprintf("%s sees %s as %q, want %q", c.UserID, userID, got, want)
	})
}

// An invite to a user of another server reaches their sync with the
// room's stripped state; they join through the inviter's server, and a
// second invitee who rejects the invite is seen to leave on both sides.
func TestRemoteInviteJoinAndReject(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := b.Register(t, "carol", "pw-carol")

	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat", "name": "Secret"}).Str("room_id")
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", map[string]any{"user_id": carol.UserID})
	if got := membership(alice, roomID, bob.UserID); got != "invite" {
		t.Fatalf("bob's membership on A: %q", got)
	}

	servertest.Eventually(t, 5*time.Second, func() (bool, string) {
		inv := section(syncRooms(bob), "invite", roomID)
		state, _ := inv["invite_state"].(map[string]any)
		evs, _ := state["events"].([]any)
		for _, e := range evs {
			ev, _ := e.(map[string]any)
			if c, _ := ev["content"].(map[string]any); ev["type"] == "m.room.name" && c["name"] == "Secret" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("bob's sync invite section: %v", inv)
	})

	// Joining needs no server name: the invite says where the room is.
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")
	if j := section(syncRooms(bob), "join", roomID); j == nil {
		t.Fatalf("the room is not in bob's joined rooms after joining")
	}

	// Carol rejects: the leave goes through A, and her invite is gone.
	carol.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
	waitMembership(t, alice, roomID, carol.UserID, "leave")
	waitMembership(t, bob, roomID, carol.UserID, "leave")
	if inv := section(syncRooms(carol), "invite", roomID); inv != nil {
		t.Fatalf("carol still has the invite after rejecting it: %v", inv)
	}
	sameState(t, roomID, alice, bob)
}

// Kicks and bans of a remote user take effect on both servers; a banned
// user cannot come back.
func TestRemoteKickAndBan(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	join := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(a.ServerName())
	bob.Must(200, "POST", join, map[string]any{})

	since := bob.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0", nil).Str("next_batch")
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "out"})
	waitMembership(t, bob, roomID, bob.UserID, "leave")
	r := bob.Must(200, "GET", "/_matrix/client/v3/sync?timeout=5000&since="+url.QueryEscape(since), nil)
	rooms, _ := r.JSON["rooms"].(map[string]any)
	if section(rooms, "leave", roomID) == nil {
		t.Fatalf("the room is not in bob's left rooms after the kick: %s", r)
	}

	bob.Must(200, "POST", join, map[string]any{}) // a kick is no ban
	waitMembership(t, alice, roomID, bob.UserID, "join")
	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/ban", map[string]any{"user_id": bob.UserID})
	waitMembership(t, bob, roomID, bob.UserID, "ban")
	if r := bob.Do("POST", join, map[string]any{}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("a banned user rejoining: %s", r)
	}
	sameState(t, roomID, alice, bob)
}

// Edits, reactions and redactions cross servers: the reaction is
// aggregated on the other side, and a redaction strips the content there.
func TestRemoteRelationsAndRedactions(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	msg := send(alice, roomID, "original")
	waitBodies(t, bob, roomID, "original")
	bob.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.reaction/r1", url.PathEscape(roomID)),
		map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": msg, "key": "👍"}})
	alice.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/e1", url.PathEscape(roomID)),
		map[string]any{"msgtype": "m.text", "body": "* edited", "m.new_content": map[string]any{"msgtype": "m.text", "body": "edited"},
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": msg}})

	rel := "/_matrix/client/v1/rooms/" + url.PathEscape(roomID) + "/relations/" + url.PathEscape(msg)
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		ra := alice.Do("GET", rel, nil)
		rb := bob.Do("GET", rel, nil)
		ca, _ := ra.JSON["chunk"].([]any)
		cb, _ := rb.JSON["chunk"].([]any)
		return len(ca) == 2 && len(cb) == 2, fmt.Sprintf("relations on A: %s; on B: %s", ra, rb)
	})

	alice.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/x1", url.PathEscape(roomID), url.PathEscape(msg)), map[string]any{"reason": "oops"})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := bob.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/event/"+url.PathEscape(msg), nil)
		content, _ := r.JSON["content"].(map[string]any)
		return r.Status == 200 && len(content) == 0, fmt.Sprintf("the redacted event on B: %s", r)
	})
	// Bob may not redact alice's event: his redaction does not apply.
	m2 := send(alice, roomID, "keep me")
	waitBodies(t, bob, roomID, "keep me")
	if r := bob.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/x2", url.PathEscape(roomID), url.PathEscape(m2)), map[string]any{}); r.Status != 403 {
		t.Fatalf("bob redacting alice's event: %s", r)
	}
}

// A server the room's server ACL denies can no longer send events into
// it, nor join; the room goes on for everyone else.
func TestServerACL(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	send(bob, roomID, "allowed")
	waitBodies(t, alice, roomID, "allowed")

	// Every test server is "localhost:<port>", and ACLs ignore ports:
	// denying localhost denies every server but the one applying it.
	alice.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.server_acl/",
		map[string]any{"allow": []string{"*"}, "deny": []string{"localhost"}, "allow_ip_literals": false})
	send(bob, roomID, "denied")
	// Wait until B has delivered it (A answered its transaction), so
	// that its absence on A is a refusal, not a delay.
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		var queued []string
		_ = b.Store().View(func(tx *store.Tx) error { queued = tx.FederationDestinations(); return nil })
		return !slices.Contains(queued, a.ServerName()), fmt.Sprintf("B still has queued for %v", queued)
	})
	send(alice, roomID, "alice goes on")
	for _, body := range timelineBodies(alice, roomID) {
		if body == "denied" {
			t.Fatalf("an event from a denied server reached A")
		}
	}
	send(alice, roomID, "still fine")
}

// A user of B knocks on A's knock-only room: the knock shows on A and in
// bob's sync; alice lets him in with an invite, and he joins.
func TestRemoteKnock(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat", "name": "Knock here",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}}).Str("room_id")

	bob.Must(200, "POST", "/_matrix/client/v3/knock/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{"reason": "let me in"})
	waitMembership(t, alice, roomID, bob.UserID, "knock")
	servertest.Eventually(t, 5*time.Second, func() (bool, string) {
		k := section(syncRooms(bob), "knock", roomID)
		return k != nil, "the room is not in bob's knocked rooms"
	})

	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", map[string]any{"user_id": bob.UserID})
	servertest.Eventually(t, 5*time.Second, func() (bool, string) {
		return section(syncRooms(bob), "invite", roomID) != nil, "bob has no invite after the knock"
	})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")
}

// createRoom's invite list may name users of other servers: they are
// invited through their server like any other invite.
func TestCreateRoomInvitesRemoteUsers(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.UserID}}).Str("room_id")
	servertest.Eventually(t, 5*time.Second, func() (bool, string) {
		return section(syncRooms(bob), "invite", roomID) != nil, "bob has no invite to the new room"
	})
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	send(bob, roomID, "hello from the invitee")
	waitBodies(t, alice, roomID, "hello from the invitee")
}
