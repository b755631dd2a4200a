package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"hearth/federation"
	"hearth/server/servertest"
)

// stateOfRoom returns the room's current state as c sees it.
func stateOfRoom(t *testing.T, c *servertest.Client, roomID string) []map[string]any {
	t.Helper()
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state", nil)
	if r.Status != 200 {
		t.Fatalf("%s: state of %s: %s", c.UserID, roomID, r)
	}
	var out []map[string]any
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// stateEventOf returns the current state event (type, key), nil if none.
func stateEventOf(t *testing.T, c *servertest.Client, roomID, typ, key string) map[string]any {
	t.Helper()
	for _, ev := range stateOfRoom(t, c, roomID) {
		if ev["type"] == typ && ev["state_key"] == key {
			return ev
		}
	}
	return nil
}

// thirdPartyInvites returns the room's m.room.third_party_invite events.
func thirdPartyInvites(t *testing.T, c *servertest.Client, roomID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ev := range stateOfRoom(t, c, roomID) {
		if ev["type"] == "m.room.third_party_invite" {
			out = append(out, ev)
		}
	}
	return out
}

// waitInvited waits for roomID in the invite section of c's sync.
func waitInvited(t *testing.T, c *servertest.Client, roomID string) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		return invitedTo(c, roomID), fmt.Sprintf("%s's sync has no invite to %s", c.UserID, roomID)
	})
}

// checkThirdPartyInviteEvent checks the m.room.third_party_invite a
// third-party /invite left: the identity server's token as state key,
// its display name and keys, the first repeated as public_key.
func checkThirdPartyInviteEvent(t *testing.T, is *identityServer, ev map[string]any) {
	t.Helper()
	c, _ := ev["content"].(map[string]any)
	keys, _ := c["public_keys"].([]any)
	var first map[string]any
	if len(keys) > 0 {
		first, _ = keys[0].(map[string]any)
	}
	base := "https://" + is.name + "/_matrix/identity/v2"
	if ev["state_key"] == "" || c["display_name"] != "b...@..." || len(keys) != 2 || first == nil ||
		c["public_key"] != first["public_key"] || c["key_validity_url"] != base+"/pubkey/isvalid" || first["key_validity_url"] != base+"/pubkey/isvalid" {
		t.Errorf("m.room.third_party_invite: %v", ev)
	}
}

// A user invites an email address nobody has bound yet: the identity
// server stores the invite and the room gets its m.room.third_party_invite.
// When bob, of a server not in the room, binds the address, his server
// has the inviter's server complete the invite (exchange_third_party_invite);
// bob sees it in his sync and joins. A signed block the identity server
// did not sign, or one whose key it has since revoked, is refused with a
// Matrix error for the identity server, and nothing lands in the room.
func TestThirdPartyInviteThroughInvitersServer(t *testing.T) {
	ca := servertest.NewCA(t)
	a, b := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	is := startIdentityServer(t, ca)
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat", "name": "Book club"}).Str("room_id")
	invitePath := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/invite"

	alice.Must(200, "POST", invitePath, is.invite3PID("bob@example.org"))
	tpis := thirdPartyInvites(t, alice, roomID)
	if len(tpis) != 1 {
		t.Fatalf("room state has %d m.room.third_party_invite events, want 1", len(tpis))
	}
	checkThirdPartyInviteEvent(t, is, tpis[0])
	if is.requestsTo("/lookup") != 1 || is.requestsTo("/store-invite") != 1 {
		t.Errorf("identity server saw %d lookups and %d store-invites, want 1 each", is.requestsTo("/lookup"), is.requestsTo("/store-invite"))
	}
	before := len(stateOfRoom(t, alice, roomID))

	// A forged signed block: A refuses it, B passes the refusal on.
	r := is.bind("bob@example.org", bob.UserID, otherKey(), "PUT")
	if r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("onbind with a forged signature: %s, want 403 M_FORBIDDEN", r)
	}
	// A key the identity server no longer vouches for.
	is.revoke(true)
	r = is.bind("bob@example.org", bob.UserID, is.key, "PUT")
	if r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("onbind with a revoked key: %s, want 403 M_FORBIDDEN", r)
	}
	if got := membership(alice, roomID, bob.UserID); got != "" {
		t.Errorf("after refused binds alice sees bob as %q, want no member event", got)
	}
	if n := len(stateOfRoom(t, alice, roomID)); n != before {
		t.Errorf("after refused binds the room has %d state events, %d before", n, before)
	}
	if invitedTo(bob, roomID) {
		t.Errorf("bob's sync shows an invite after refused binds")
	}

	// The identity server's own signature, its key valid.
	is.revoke(false)
	if r := is.bind("bob@example.org", bob.UserID, is.key, "PUT"); r.Status != 200 {
		t.Fatalf("onbind: %s", r)
	}
	waitInvited(t, bob, roomID)
	member := stateEventOf(t, alice, roomID, "m.room.member", bob.UserID)
	if get(member, "content", "membership") != "invite" || get(member, "sender") != alice.UserID ||
		get(member, "content", "third_party_invite", "display_name") != "b...@..." ||
		get(member, "content", "third_party_invite", "signed", "token") != get(tpis[0], "state_key") {
		t.Errorf("bob's member event on A: %v", member)
	}
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")

	// Only the invitee's server may ask for the invite to be completed.
	partial := map[string]any{"type": "m.room.member", "room_id": roomID, "sender": alice.UserID, "state_key": "@mallory:elsewhere.test",
		"content": map[string]any{"membership": "invite", "third_party_invite": map[string]any{"signed": map[string]any{
			"mxid": "@mallory:elsewhere.test", "token": get(tpis[0], "state_key"), "signatures": map[string]any{}}}}}
	err := b.Federation().Client().Call(context.Background(), "PUT", a.ServerName(), "/_matrix/federation/v1/exchange_third_party_invite/"+url.PathEscape(roomID), partial, nil)
	var fe *federation.Error
	if !errors.As(err, &fe) || fe.Status != http.StatusForbidden || fe.Code != "M_FORBIDDEN" {
		t.Errorf("exchange_third_party_invite for another server's user: %v, want 403 M_FORBIDDEN", err)
	}
}

// When the invitee's server is in the room itself (carol, of B, joined
// it), it completes the invite on binding, with the inviter as sender and
// its own signature; the inviter's server takes the event, as the spec
// says it must (the invite's sender's server need not sign it). The
// invite here comes from createRoom's invite_3pid, and the identity
// server POSTs onbind, as Sydent does.
func TestThirdPartyInviteInviteesServerInRoom(t *testing.T) {
	ca := servertest.NewCA(t)
	a, b := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	is := startIdentityServer(t, ca)
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := b.Register(t, "carol", "pw-carol")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"preset": "private_chat", "invite": []string{carol.UserID},
		"invite_3pid": []any{is.invite3PID("bob@example.org")},
	}).Str("room_id")
	tpis := thirdPartyInvites(t, alice, roomID)
	if len(tpis) != 1 {
		t.Fatalf("room state has %d m.room.third_party_invite events, want 1", len(tpis))
	}
	checkThirdPartyInviteEvent(t, is, tpis[0])
	carol.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, carol.UserID, "join")
	sameState(t, roomID, alice, carol)
	before := len(stateOfRoom(t, carol, roomID))

	r := is.bind("bob@example.org", bob.UserID, otherKey(), "POST")
	if r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("onbind with a forged signature: %s, want 403 M_FORBIDDEN", r)
	}
	if n := len(stateOfRoom(t, carol, roomID)); n != before || membership(carol, roomID, bob.UserID) != "" {
		t.Errorf("after a forged bind B has %d state events (%d before), bob as %q", n, before, membership(carol, roomID, bob.UserID))
	}

	if r := is.bind("bob@example.org", bob.UserID, is.key, "POST"); r.Status != 200 {
		t.Fatalf("onbind: %s", r)
	}
	waitInvited(t, bob, roomID)
	waitMembership(t, alice, roomID, bob.UserID, "invite")
	member := stateEventOf(t, alice, roomID, "m.room.member", bob.UserID)
	if get(member, "sender") != alice.UserID || get(member, "content", "third_party_invite", "signed", "mxid") != bob.UserID {
		t.Errorf("bob's member event on A: %v", member)
	}
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")
	sameState(t, roomID, alice, bob)
}

// An address already bound to a Matrix ID is an ordinary invite of that
// user: nothing is stored at the identity server and the room gets no
// m.room.third_party_invite.
func TestThirdPartyInviteOfBoundAddress(t *testing.T) {
	ca := servertest.NewCA(t)
	a, b := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	is := startIdentityServer(t, ca)
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	is.knowBinding("bob@example.org", bob.UserID)
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}).Str("room_id")

	alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", is.invite3PID("bob@example.org"))
	waitInvited(t, bob, roomID)
	member := stateEventOf(t, alice, roomID, "m.room.member", bob.UserID)
	if get(member, "content", "membership") != "invite" || get(member, "content", "third_party_invite") != nil {
		t.Errorf("bob's member event: %v, want a plain invite", member)
	}
	if n := len(thirdPartyInvites(t, alice, roomID)); n != 0 {
		t.Errorf("room has %d m.room.third_party_invite events, want none", n)
	}
	if is.requestsTo("/hash_details") != 1 || is.requestsTo("/lookup") != 1 || is.requestsTo("/store-invite") != 0 {
		t.Errorf("identity server saw %d hash_details, %d lookups, %d store-invites; want 1, 1, 0",
			is.requestsTo("/hash_details"), is.requestsTo("/lookup"), is.requestsTo("/store-invite"))
	}
	bob.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", map[string]any{})
	waitMembership(t, alice, roomID, bob.UserID, "join")
}

// Identity servers are named by users: one on a private address is
// refused with M_SERVER_NOT_TRUSTED unless the operator allows private
// addresses, and is never contacted. A third-party invite names all four
// fields, and only a member may send one.
func TestThirdPartyInviteRequests(t *testing.T) {
	ca := servertest.NewCA(t)
	is := startIdentityServer(t, ca)
	guarded := servertest.Start(t, servertest.Options{SSRFGuard: true})
	alice := guarded.Register(t, "alice", "pw-alice")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}).Str("room_id")
	invitePath := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/invite"

	r := alice.Do("POST", invitePath, is.invite3PID("bob@example.org"))
	if r.Status != http.StatusBadRequest || r.Errcode() != "M_SERVER_NOT_TRUSTED" {
		t.Errorf("invite through an identity server on loopback: %s, want 400 M_SERVER_NOT_TRUSTED", r)
	}
	if n := is.total(); n != 0 {
		t.Errorf("the identity server got %d requests, want none", n)
	}

	open := ca.Start(t, servertest.Options{})
	carol := open.Register(t, "carol", "pw-carol")
	dave := open.Register(t, "dave", "pw-dave")
	room2 := carol.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}).Str("room_id")
	path2 := "/_matrix/client/v3/rooms/" + url.PathEscape(room2) + "/invite"
	noToken := is.invite3PID("bob@example.org")
	delete(noToken, "id_access_token")
	if r := carol.Do("POST", path2, noToken); r.Status != http.StatusBadRequest || r.Errcode() != "M_MISSING_PARAM" {
		t.Errorf("invite without id_access_token: %s, want 400 M_MISSING_PARAM", r)
	}
	if r := carol.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"invite_3pid": []any{noToken}}); r.Status != http.StatusBadRequest || r.Errcode() != "M_MISSING_PARAM" {
		t.Errorf("createRoom with an invite_3pid without id_access_token: %s, want 400 M_MISSING_PARAM", r)
	}
	if r := dave.Do("POST", path2, is.invite3PID("bob@example.org")); r.Status != http.StatusForbidden || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("third-party invite by a non-member: %s, want 403 M_FORBIDDEN", r)
	}
	if n := is.total(); n != 0 {
		t.Errorf("the identity server got %d requests, want none", n)
	}

	// The identity server's refusal reaches the client, but never as a
	// 401, which would say the client's token here is bad.
	expired := is.invite3PID("bob@example.org")
	expired["id_access_token"] = expiredToken
	if r := carol.Do("POST", path2, expired); r.Status != http.StatusForbidden || r.Errcode() != "M_UNAUTHORIZED" {
		t.Errorf("invite with a token the identity server refuses: %s, want 403 M_UNAUTHORIZED", r)
	}
	if n := len(thirdPartyInvites(t, carol, room2)); n != 0 {
		t.Errorf("room has %d m.room.third_party_invite events after refused invites, want none", n)
	}
}
