package federation_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
)

func setState(c *servertest.Client, roomID, typ string, content any) {
	c.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+typ+"/", content)
}

// A netsplit: while A and B cannot reach each other, both change the
// room's name and power levels and send messages. After the split heals,
// both servers converge on the same current state, and every message sent
// during the split is on both sides. In room versions 10 and 11 (Synapse's
// default), resolved by state resolution 2, and 12, by 2.1.
func TestNetsplitConverges(t *testing.T) {
	for _, v := range []string{"10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) { netsplitConverges(t, v) })
	}
}

func netsplitConverges(t *testing.T, version string) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat", "name": "Before", "room_version": version}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	pl := alice.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", nil).JSON
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[bob.UserID] = 100
	pl["users"] = users
	setState(alice, roomID, "m.room.power_levels", pl)
	waitPower(t, bob, roomID, bob.UserID, 100)

	a.Partition(b)
	setState(alice, roomID, "m.room.name", map[string]any{"name": "A side"})
	setState(bob, roomID, "m.room.name", map[string]any{"name": "B side"})
	plA := clone(pl)
	plA["state_default"] = 60
	setState(alice, roomID, "m.room.power_levels", plA)
	plB := clone(pl)
	plB["events_default"] = 10
	setState(bob, roomID, "m.room.power_levels", plB)
	// Both rename themselves: conflicting member events, which must not
	// drop either user out of the room.
	alice.Must(200, "PUT", "/_matrix/client/v3/profile/"+url.PathEscape(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice split"})
	bob.Must(200, "PUT", "/_matrix/client/v3/profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob split"})
	var sentA, sentB []string
	for i := range 3 {
		sentA = append(sentA, fmt.Sprintf("from A during the split %d", i))
		send(alice, roomID, sentA[i])
		sentB = append(sentB, fmt.Sprintf("from B during the split %d", i))
		send(bob, roomID, sentB[i])
	}
	a.Heal(b)

	waitBodies(t, alice, roomID, sentB...)
	waitBodies(t, bob, roomID, sentA...)
	// One more message each merges the forks.
	send(alice, roomID, "after A")
	send(bob, roomID, "after B")
	waitBodies(t, alice, roomID, "after B")
	waitBodies(t, bob, roomID, "after A")
	sameState(t, roomID, alice, bob)
	for _, c := range []*servertest.Client{alice, bob} {
		for _, u := range []string{alice.UserID, bob.UserID} {
			if m := membership(c, roomID, u); m != "join" {
				t.Errorf("%s sees %s as %q after the split", c.UserID, u, m)
			}
		}
	}
}

func clone(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func waitPower(t *testing.T, c *servertest.Client, roomID, userID string, level float64) {
	t.Helper()
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		pl := c.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", nil)
		users, _ := pl.JSON["users"].(map[string]any)
		return users[userID] == level, fmt.Sprintf("power levels on %s: %s", c.UserID, pl)
	})
}
