package keys_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
	"hearth/store"
)

// A client on one server encrypts for a device on another without sharing
// a room: it queries the device's keys, claims a one-time key and sends
// an (Olm-shaped) to-device message, which the device receives in /sync.
func TestKeysAndToDeviceAcrossServers(t *testing.T) {
	servers := servertest.Federation(t, 2)
	a, b := servers[0], servers[1]
	alice := newDevice(a.Register(t, "alice", password))
	bob := newDevice(b.Register(t, "bob", password))
	bob2 := newDevice(b.Login(t, "bob", password))
	bob.uploadAll(t, 2)
	bob2.uploadAll(t, 1)
	alice.uploadAll(t, 1)
	csKeys := newCrossSigning().keys(t, bob.UserID)
	bob.Must(200, "POST", "/_matrix/client/v3/keys/device_signing/upload", csKeys)

	t.Run("query", func(t *testing.T) {
		q := alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{
			"device_keys": map[string]any{bob.UserID: []string{}, alice.UserID: []string{}}})
		if f, _ := q.JSON["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("failures: %s", q)
		}
		for _, d := range []*device{bob, bob2} {
			if got := get(q.JSON, "device_keys", bob.UserID, d.DeviceID, "keys", "ed25519:"+d.DeviceID); got != d.pub {
				t.Errorf("bob's device %s: ed25519 key %v, want %s", d.DeviceID, got, d.pub)
			}
		}
		if get(q.JSON, "device_keys", alice.UserID, alice.DeviceID) == nil {
			t.Errorf("alice's own device missing: %s", q)
		}
		if get(q.JSON, "master_keys", bob.UserID, "keys") == nil || get(q.JSON, "self_signing_keys", bob.UserID) == nil {
			t.Errorf("bob's cross-signing keys missing: %s", q)
		}
		if get(q.JSON, "user_signing_keys", bob.UserID) != nil {
			t.Errorf("bob's user-signing key reached another server's user: %s", q)
		}
		one := alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{
			"device_keys": map[string]any{bob.UserID: []string{bob2.DeviceID}}})
		if devs, _ := get(one.JSON, "device_keys", bob.UserID).(map[string]any); len(devs) != 1 || devs[bob2.DeviceID] == nil {
			t.Errorf("query for one device: got %v", devs)
		}
	})

	var otkID string
	t.Run("claim", func(t *testing.T) {
		c := alice.Must(200, "POST", "/_matrix/client/v3/keys/claim", map[string]any{
			"one_time_keys": map[string]any{bob.UserID: map[string]string{bob.DeviceID: "signed_curve25519"}}})
		keys, _ := get(c.JSON, "one_time_keys", bob.UserID, bob.DeviceID).(map[string]any)
		if len(keys) != 1 {
			t.Fatalf("claim: %s", c)
		}
		for id := range keys {
			otkID = id
		}
		if otkID == "signed_curve25519:FB"+bob.DeviceID {
			t.Errorf("got the fallback key while one-time keys were left")
		}
		// The key is gone from B: bob's sync counts one fewer.
		r := bob.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0", nil)
		if n := get(r.JSON, "device_one_time_keys_count", "signed_curve25519"); n != 1.0 {
			t.Errorf("bob's one-time key count after the claim: %v, want 1", n)
		}
	})

	t.Run("to-device", func(t *testing.T) {
		_, since := syncFrom(t, bob, "", 0)
		_, since2 := syncFrom(t, bob2, "", 0)
		content := map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": randomKey(),
			"ciphertext": map[string]any{"x": map[string]any{"type": 0, "body": "prekey " + otkID}}}
		path := "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1"
		alice.Must(200, "PUT", path, map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: content}}})
		alice.Must(200, "PUT", path, map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: content}}}) // a retry

		events := waitToDevice(t, bob, since)
		if len(events) != 1 {
			t.Fatalf("bob's device: want the one message, got %v", events)
		}
		ev := events[0].(map[string]any)
		if ev["sender"] != alice.UserID || ev["type"] != "m.room.encrypted" || get(ev, "content", "ciphertext", "x", "body") != "prekey "+otkID {
			t.Errorf("bob received %v", ev)
		}
		// "*" reaches every device of the user.
		alice.Must(200, "PUT", "/_matrix/client/v3/sendToDevice/m.test/txn2", map[string]any{"messages": map[string]any{bob.UserID: map[string]any{"*": map[string]any{"n": 2}}}})
		if got := waitToDevice(t, bob2, since2); len(got) != 1 || get(got[0], "content", "n") != 2.0 {
			t.Errorf("bob's second device: want only the message for all devices, got %v", got)
		}
	})

	t.Run("unknown server fails, the rest answers", func(t *testing.T) {
		q := alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"timeout": 2000,
			"device_keys": map[string]any{bob.UserID: []string{}, "@x:unreachable.invalid": []string{}}})
		if get(q.JSON, "failures", "unreachable.invalid") == nil || get(q.JSON, "device_keys", bob.UserID, bob.DeviceID) == nil {
			t.Errorf("query: %s", q)
		}
	})
}

// waitToDevice long-polls c's sync from since until to-device messages
// arrive, and returns them.
func waitToDevice(t *testing.T, c *device, since string) []any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, next := syncFrom(t, c, since, 2000)
		if evs, _ := get(resp, "to_device", "events").([]any); len(evs) > 0 {
			// Nothing more may follow: a duplicate would show here.
			more, _ := syncFrom(t, c, next, 500)
			if extra, _ := get(more, "to_device", "events").([]any); len(extra) > 0 {
				t.Errorf("more to-device messages than sent: %v", extra)
			}
			return evs
		}
		since = next
	}
	t.Fatalf("%s: no to-device message within 10 s", c.UserID)
	return nil
}

// A remote user's device changes reach the syncs (device_lists.changed)
// and key queries of the users sharing a room with them: the other
// server's device-list cache follows their server's updates, and an
// update that does not follow on from it makes the server fetch the whole
// list again.
func TestDeviceListsAcrossServers(t *testing.T) {
	servers := servertest.Federation(t, 2)
	a, b := servers[0], servers[1]
	alice := newDevice(a.Register(t, "alice", password))
	bob := newDevice(b.Register(t, "bob", password))
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/joined_members", nil)
		return get(r.JSON, "joined", bob.UserID) != nil, "bob not joined on A: " + r.String()
	})
	_, since := syncFrom(t, alice, "", 0)
	query := func() map[string]any {
		return alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}}).JSON
	}
	// waitKeys waits for bob in alice's device_lists.changed and for
	// alice's query, made each time he is listed, to pass ok: bob's join
	// announced his devices to A, so a change may be listed that came
	// before the one awaited.
	waitKeys := func(what string, ok func(q map[string]any) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			resp, next := syncFrom(t, alice, since, 1000)
			since = next
			if slices.Contains(changed(resp), bob.UserID) && ok(query()) {
				return
			}
		}
		t.Fatalf("%s: not signalled in alice's device_lists.changed and served by her query; last query: %v", what, query())
	}

	bob.uploadAll(t, 1)
	waitKeys("bob's first keys", func(q map[string]any) bool {
		return get(q, "device_keys", bob.UserID, bob.DeviceID) != nil
	})

	bob2 := newDevice(b.Login(t, "bob", password))
	bob2.uploadAll(t, 1)
	waitKeys("a new device", func(q map[string]any) bool {
		return get(q, "device_keys", bob.UserID, bob2.DeviceID, "keys", "ed25519:"+bob2.DeviceID) == bob2.pub
	})

	bob2.Must(200, "POST", "/_matrix/client/v3/logout", map[string]any{})
	waitKeys("a device deleted", func(q map[string]any) bool {
		return get(q, "device_keys", bob.UserID, bob2.DeviceID) == nil
	})

	cs := newCrossSigning()
	bob.Must(200, "POST", "/_matrix/client/v3/keys/device_signing/upload", cs.keys(t, bob.UserID))
	waitKeys("cross-signing keys", func(q map[string]any) bool {
		return get(q, "master_keys", bob.UserID, "keys", "ed25519:"+pubOf(cs.master)) == pubOf(cs.master)
	})

	// B's update that follows nothing A has seen: A fetches the list again
	// from B instead of applying it, so the ghost device never shows.
	ghost := map[string]any{"edu_type": "m.device_list_update", "content": map[string]any{
		"user_id": bob.UserID, "device_id": "GHOST", "stream_id": 1000, "prev_id": []int{999},
		"keys": map[string]any{"user_id": bob.UserID, "device_id": "GHOST", "keys": map[string]any{"ed25519:GHOST": "x"}},
	}}
	err := b.Federation().Client().Call(context.Background(), "PUT", a.ServerName(), "/_matrix/federation/v1/send/gap1",
		map[string]any{"origin": b.ServerName(), "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": []any{ghost}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitKeys("a resync after a gap", func(q map[string]any) bool {
		return get(q, "device_keys", bob.UserID, "GHOST") == nil && get(q, "device_keys", bob.UserID, bob.DeviceID) != nil
	})

	// While no room is shared, B sends A no updates: when bob is back, A
	// must not serve the list it had before.
	room := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)
	bob.Must(200, "POST", room+"/leave", map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", room+"/joined_members", nil)
		return get(r.JSON, "joined", bob.UserID) == nil, "bob still joined on A: " + r.String()
	})
	bob3 := newDevice(b.Login(t, "bob", password))
	bob3.uploadAll(t, 1)
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", room+"/joined_members", nil)
		return get(r.JSON, "joined", bob.UserID) != nil, "bob not back on A: " + r.String()
	})
	if get(query(), "device_keys", bob.UserID, bob3.DeviceID) == nil {
		t.Errorf("bob's device added while no room was shared is missing on A")
	}
}

// A user of A who joins a room on B for the first time is announced to
// B's members: their sync lists her in device_lists.changed and their key
// queries return her device. When she renames the device, the new name
// reaches them the same way (a device-list change, then the name in the
// key query), and A's users sharing a room with her see the change too.
func TestDeviceJoinAndRenameAcrossServers(t *testing.T) {
	servers := servertest.FederationWith(t, 2, servertest.Options{DeviceNamesOverFederation: true})
	a, b := servers[0], servers[1]
	alice := newDevice(a.Register(t, "alice", password))
	carol := newDevice(a.Register(t, "carol", password))
	bob := newDevice(b.Register(t, "bob", password))
	alice.uploadAll(t, 1)
	roomID := bob.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	_, bobSince := syncFrom(t, bob, "", 0)
	join := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(b.ServerName())
	alice.Must(200, "POST", join, map[string]any{})
	carol.Must(200, "POST", join, map[string]any{})

	// waitChanged long-polls c's sync from *since until userID is in its
	// device_lists.changed.
	waitChanged := func(c *device, since *string, userID, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			resp, next := syncFrom(t, c, *since, 1000)
			*since = next
			if slices.Contains(changed(resp), userID) {
				return
			}
		}
		t.Fatalf("%s: %s never in %s's device_lists.changed", what, userID, c.UserID)
	}
	query := func(c *device) map[string]any {
		return c.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}).JSON
	}

	waitChanged(bob, &bobSince, alice.UserID, "alice's join")
	if got := get(query(bob), "device_keys", alice.UserID, alice.DeviceID, "keys", "ed25519:"+alice.DeviceID); got != alice.pub {
		t.Fatalf("alice's device in bob's query: %v, want her key %s", got, alice.pub)
	}
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/joined_members", nil)
		return get(r.JSON, "joined", carol.UserID) != nil, "carol not joined as A sees it: " + r.String()
	})
	_, bobSince = syncFrom(t, bob, bobSince, 0)
	_, carolSince := syncFrom(t, carol, "", 0)

	const name = "Alice's laptop"
	alice.Must(200, "PUT", "/_matrix/client/v3/devices/"+url.PathEscape(alice.DeviceID), map[string]any{"display_name": name})
	waitChanged(carol, &carolSince, alice.UserID, "the rename, on A")
	if got := get(query(carol), "device_keys", alice.UserID, alice.DeviceID, "unsigned", "device_display_name"); got != name {
		t.Errorf("carol's query names alice's device %v, want %q", got, name)
	}
	waitChanged(bob, &bobSince, alice.UserID, "the rename, on B")
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		q := query(bob)
		got := get(q, "device_keys", alice.UserID, alice.DeviceID, "unsigned", "device_display_name")
		return got == name, fmt.Sprintf("bob's query names alice's device %v, want %q: %v", got, name, q)
	})

	// What A tells any server of her devices carries the name too.
	var devices struct {
		Devices []struct {
			DeviceID string `json:"device_id"`
			Name     string `json:"device_display_name"`
		} `json:"devices"`
	}
	if err := b.Federation().Client().Call(context.Background(), "GET", a.ServerName(),
		"/_matrix/federation/v1/user/devices/"+url.PathEscape(alice.UserID), nil, &devices); err != nil {
		t.Fatal(err)
	}
	if len(devices.Devices) != 1 || devices.Devices[0].Name != name {
		t.Errorf("A's user/devices for alice: %+v, want her device named %q", devices.Devices, name)
	}
	var keys map[string]any
	if err := b.Federation().Client().Call(context.Background(), "POST", a.ServerName(), "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &keys); err != nil {
		t.Fatal(err)
	}
	if got := get(keys, "device_keys", alice.UserID, alice.DeviceID, "unsigned", "device_display_name"); got != name {
		t.Errorf("A's user/keys/query names alice's device %v, want %q", got, name)
	}
}

// By default other servers are not told our users' device names
// (Synapse's allow_device_name_lookup_over_federation: false): bob on
// B sees alice's device and key, not what she called it, and A's own
// federation answers carry no name either.
func TestDeviceNamesStayHome(t *testing.T) {
	servers := servertest.Federation(t, 2)
	a, b := servers[0], servers[1]
	alice := newDevice(a.Register(t, "alice", password))
	bob := newDevice(b.Register(t, "bob", password))
	alice.uploadAll(t, 1)
	alice.Must(200, "PUT", "/_matrix/client/v3/devices/"+url.PathEscape(alice.DeviceID), map[string]any{"display_name": "Alice's work laptop"})
	roomID := bob.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	alice.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(b.ServerName()), map[string]any{})

	q := bob.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}).JSON
	if got := get(q, "device_keys", alice.UserID, alice.DeviceID, "keys", "ed25519:"+alice.DeviceID); got != alice.pub {
		t.Fatalf("alice's device in bob's query: %v, want her key %s", got, alice.pub)
	}
	if got := get(q, "device_keys", alice.UserID, alice.DeviceID, "unsigned", "device_display_name"); got != nil {
		t.Errorf("bob's query names alice's device %v", got)
	}
	var devices struct {
		Devices []map[string]any `json:"devices"`
	}
	if err := b.Federation().Client().Call(context.Background(), "GET", a.ServerName(),
		"/_matrix/federation/v1/user/devices/"+url.PathEscape(alice.UserID), nil, &devices); err != nil {
		t.Fatal(err)
	}
	if len(devices.Devices) != 1 || devices.Devices[0]["device_display_name"] != nil {
		t.Errorf("A's user/devices for alice: %v, want her one device without a name", devices.Devices)
	}
	// Nor A's answer to a key query (found interoperating with Dendrite,
	// which asks it directly).
	var keys map[string]any
	if err := b.Federation().Client().Call(context.Background(), "POST", a.ServerName(), "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &keys); err != nil {
		t.Fatal(err)
	}
	if got := get(keys, "device_keys", alice.UserID, alice.DeviceID, "keys", "ed25519:"+alice.DeviceID); got != alice.pub {
		t.Fatalf("alice's device in A's user/keys/query: %v, want her key %s", got, alice.pub)
	}
	if got := get(keys, "device_keys", alice.UserID, alice.DeviceID, "unsigned", "device_display_name"); got != nil {
		t.Errorf("A's user/keys/query names alice's device %v", got)
	}
}

// When bob joins alice's room from another server, alice's sync lists
// him as changed once: his server then announces his devices to ours
// (a newly shared server), and that first look at his list changes
// nothing alice's client holds, so it is not listed again. A real change
// afterwards is. (Complement's TestDeviceListsUpdateOverFederation
// expects exactly this.)
func TestJoinListsJoinerOnce(t *testing.T) {
	servers := servertest.Federation(t, 2)
	a, b := servers[0], servers[1]
	alice := newDevice(a.Register(t, "alice", password))
	bob := newDevice(b.Register(t, "bob", password))
	bob.uploadAll(t, 1)
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}).Str("room_id")
	_, since := syncFrom(t, alice, "", 0)
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})

	// listed long-polls alice's sync until bob is in device_lists.changed.
	listed := func() bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			resp, next := syncFrom(t, alice, since, 1000)
			if since = next; slices.Contains(changed(resp), bob.UserID) {
				return true
			}
		}
		return false
	}
	if !listed() {
		t.Fatal("bob's join never listed in alice's device_lists.changed")
	}
	// B has delivered what it had for A: the join's device announcement.
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		var queued []string
		_ = b.Store().View(func(tx *store.Tx) error { queued = tx.FederationDestinations(); return nil })
		return !slices.Contains(queued, a.ServerName()), fmt.Sprintf("B still has queued for %v", queued)
	})
	if resp, _ := syncFrom(t, alice, since, 500); slices.Contains(changed(resp), bob.UserID) {
		t.Fatalf("bob listed as changed again after his join: %v", get(resp, "device_lists"))
	}

	bob2 := newDevice(b.Login(t, "bob", password))
	bob2.uploadAll(t, 1)
	if !listed() {
		t.Fatal("bob's new device never listed in alice's device_lists.changed")
	}
}
