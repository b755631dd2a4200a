package federation_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
)

// A's queue for B survives A's restart: what alice sent while B was down
// reaches B once it is back, in order and exactly once.
func TestQueueSurvivesRestart(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	send(alice, roomID, "before")
	waitBodies(t, bob, roomID, "before")

	b.Stop(t)
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("while B was down %d", i))
		send(alice, roomID, want[i])
	}
	a.Restart(t)
	alice.URL = a.URL
	b.Resume(t)
	bob.URL = b.URL

	servertest.Eventually(t, 30*time.Second, func() (bool, string) {
		got := timelineBodies(bob, roomID)
		var down []string
		for _, g := range got {
			if slices.Contains(want, g) {
				down = append(down, g)
			}
		}
		return slices.Equal(down, want), fmt.Sprintf("B has %q", got)
	})
	sameState(t, roomID, alice, bob)
}
