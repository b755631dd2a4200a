//go:build goolm

package e2ee_test

import (
	"context"
	"testing"
	"time"

	"hearth/server/servertest"
)

// TestEncryptedChatAcrossServers: alice on server A and bob on server B
// talk in an encrypted room with mautrix-go clients. The invite reaches
// bob's sync over federation and he joins through the inviter's server;
// each side's first message is a full cross-server E2EE round (the key
// query and the one-time-key claim proxied to the other server, the room
// key sent as a to-device message over federation, the megolm event in a
// federation transaction). Then bob logs in a laptop on B and alice a
// laptop on A: each other side learns of the new device only from
// device_lists.changed fed by the other server's m.device_list_update,
// and shares its next room key with it.
func TestEncryptedChatAcrossServers(t *testing.T) {
	servers := servertest.Federation(t, 2)
	a, b := servers[0], servers[1]
	ctx := context.Background()
	alice, bob := servertest.UniqueName("alice"), servertest.UniqueName("bob")
	alicePhone := newDevice(t, a, alice, "alice phone", true)
	bobPhone := newDevice(t, b, bob, "bob phone", true)
	alicePhone.startSync()
	bobPhone.startSync()

	created := alicePhone.createEncryptedRoom(bobPhone)
	alicePhone.roomID, bobPhone.roomID = created.RoomID, created.RoomID
	eventually(t, "bob's phone to sync the invite from the other server", func() bool {
		return bobPhone.cli.StateStore.IsInvited(ctx, created.RoomID, bobPhone.cli.UserID)
	})
	// No via: B joins through the inviter's server, as a client that
	// accepts an invite does.
	if _, err := bobPhone.cli.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	alicePhone.waitJoined(bobPhone.cli.UserID)
	bobPhone.waitJoined(alicePhone.cli.UserID)

	// exchange has from send a message and waits until every device in to
	// has decrypted it, as sent by from.
	exchange := func(from *device, body string, to ...*device) {
		t.Helper()
		start := time.Now()
		eventID := from.send(body)
		for _, d := range to {
			evt := d.waitMessage(body)
			if evt.ID != eventID || evt.Sender != from.cli.UserID {
				t.Errorf("%s decrypted %q as %s from %s; want %s from %s", d.name, body, evt.ID, evt.Sender, eventID, from.cli.UserID)
			}
			t.Logf("%s → %s across servers: %v", from.name, d.name, time.Since(start))
		}
	}
	exchange(alicePhone, "hello bob, from A", bobPhone)
	exchange(bobPhone, "hello alice, from B", alicePhone)

	// A device bob adds on B: alice's phone must share its next room key
	// with it, and the laptop fetches alice's devices from A to answer.
	// (Each new device logs that it cannot decrypt the earlier messages:
	// they were sent before it existed, with keys it was never given.)
	bobLaptop := newDevice(t, b, bob, "bob laptop", false)
	bobLaptop.roomID = created.RoomID
	bobLaptop.startSync()
	bobLaptop.waitJoined(alicePhone.cli.UserID)
	alicePhone.waitDevice(bobLaptop)
	exchange(alicePhone, "alice to both of bob's devices", bobPhone, bobLaptop)
	exchange(bobLaptop, "bob's laptop answers", alicePhone)

	// And one alice adds on A, which bob's phone learns of from B.
	aliceLaptop := newDevice(t, a, alice, "alice laptop", false)
	aliceLaptop.roomID = created.RoomID
	aliceLaptop.startSync()
	aliceLaptop.waitJoined(bobPhone.cli.UserID)
	bobPhone.waitDevice(aliceLaptop)
	exchange(bobPhone, "bob to both of alice's devices", alicePhone, aliceLaptop)
}
