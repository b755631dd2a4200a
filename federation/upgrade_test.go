package federation_test

import (
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
)

// alice upgrades a room bob of B is in: B gets the old room's tombstone
// (and the power levels that silence it), so bob's client can follow it,
// and bob joins the new room through A.
func TestUpgradeAcrossServers(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	oldRoom := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(oldRoom)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(oldRoom)+"/state/m.room.member/"+url.PathEscape(bob.UserID), nil)
		return r.Str("membership") == "join", "bob not joined on A: " + r.String()
	})
	newRoom := alice.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(oldRoom)+"/upgrade", map[string]any{"new_version": "12"}).Str("replacement_room")
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := bob.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(oldRoom)+"/state/m.room.tombstone/", nil)
		return r.Status == 200 && r.Str("replacement_room") == newRoom, "the tombstone on B: " + r.String()
	})
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(newRoom)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
}
