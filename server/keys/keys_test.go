package keys_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/pdu"
	"hearth/server/servertest"
)

const password = "correct horse battery"

var b64 = base64.RawStdEncoding

// device is a client device with a real ed25519 identity key.
type device struct {
	*servertest.Client
	priv ed25519.PrivateKey
	pub  string
}

func newDevice(c *servertest.Client) *device {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &device{Client: c, priv: priv, pub: b64.EncodeToString(pub)}
}

// sign signs obj (without its signatures and unsigned) in canonical JSON
// as signer's key keyID and adds the signature.
func sign(t *testing.T, obj map[string]any, signer, keyID string, priv ed25519.PrivateKey) map[string]any {
	t.Helper()
	bare := map[string]any{}
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			bare[k] = v
		}
	}
	raw, _ := json.Marshal(bare)
	canon, err := pdu.CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	mine, _ := sigs[signer].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine[keyID] = b64.EncodeToString(ed25519.Sign(priv, canon))
	sigs[signer] = mine
	obj["signatures"] = sigs
	return obj
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b64.EncodeToString(b)
}

func (d *device) deviceKeys(t *testing.T) map[string]any {
	return sign(t, map[string]any{
		"user_id": d.UserID, "device_id": d.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]any{"curve25519:" + d.DeviceID: randomKey(), "ed25519:" + d.DeviceID: d.pub},
	}, d.UserID, "ed25519:"+d.DeviceID, d.priv)
}

func (d *device) otk(t *testing.T, fallback bool) map[string]any {
	o := map[string]any{"key": randomKey()}
	if fallback {
		o["fallback"] = true
	}
	return sign(t, o, d.UserID, "ed25519:"+d.DeviceID, d.priv)
}

// uploadAll uploads the device's identity keys, n one-time keys and a
// fallback key.
func (d *device) uploadAll(t *testing.T, n int) *servertest.Response {
	t.Helper()
	otks := map[string]any{}
	for i := range n {
		otks[fmt.Sprintf("signed_curve25519:%s%d", d.DeviceID, i)] = d.otk(t, false)
	}
	return d.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{
		"device_keys":   d.deviceKeys(t),
		"one_time_keys": otks,
		"fallback_keys": map[string]any{"signed_curve25519:FB" + d.DeviceID: d.otk(t, true)},
	})
}

// get walks a decoded JSON value by object keys.
func get(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func TestUploadQueryClaim(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	alice := servertest.UniqueName("alice")
	a1 := newDevice(srv.Register(t, alice, password))
	a2 := newDevice(srv.Login(t, alice, password))
	b1 := newDevice(srv.Register(t, servertest.UniqueName("bob"), password))

	for _, d := range []*device{a1, a2, b1} {
		r := d.uploadAll(t, 2)
		if n := get(r.JSON, "one_time_key_counts", "signed_curve25519"); n != 2.0 {
			t.Fatalf("upload counts: want 2 signed_curve25519, got %s", r)
		}
	}

	t.Run("query all devices of a user", func(t *testing.T) {
		r := b1.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{a1.UserID: []string{}}})
		devs, _ := get(r.JSON, "device_keys", a1.UserID).(map[string]any)
		if len(devs) != 2 || devs[a1.DeviceID] == nil || devs[a2.DeviceID] == nil {
			t.Fatalf("want both of alice's devices, got %s", r)
		}
		// The keys served verify with the device's own key.
		raw, _ := json.Marshal(devs[a2.DeviceID])
		if err := pdu.VerifyJSONSignature(raw, a2.UserID, "ed25519:"+a2.DeviceID, a2.pub); err != nil {
			t.Errorf("served device keys do not verify: %v", err)
		}
		if get(devs[a2.DeviceID], "unsigned", "device_display_name") == nil {
			t.Errorf("no unsigned.device_display_name: %s", raw)
		}
		if f, _ := r.JSON["failures"].(map[string]any); len(f) != 0 {
			t.Errorf("failures for local users: %v", f)
		}
	})
	t.Run("query one device, and a remote user", func(t *testing.T) {
		r := b1.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{
			a1.UserID: []string{a1.DeviceID}, "@carol:elsewhere.example": []string{},
		}})
		if devs, _ := get(r.JSON, "device_keys", a1.UserID).(map[string]any); len(devs) != 1 || devs[a1.DeviceID] == nil {
			t.Errorf("want only %s, got %s", a1.DeviceID, r)
		}
		if get(r.JSON, "failures", "elsewhere.example") == nil {
			t.Errorf("the remote server is not in failures: %s", r)
		}
	})

	claim := func(d *device) map[string]any {
		r := b1.Must(200, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{
			d.UserID: map[string]any{d.DeviceID: "signed_curve25519"},
		}})
		keys, _ := get(r.JSON, "one_time_keys", d.UserID, d.DeviceID).(map[string]any)
		return keys
	}
	t.Run("one-time keys, then the fallback key", func(t *testing.T) {
		seen := map[string]bool{}
		for i := range 2 {
			keys := claim(a1)
			if len(keys) != 1 {
				t.Fatalf("claim %d: want one key, got %v", i, keys)
			}
			for id, k := range keys {
				if seen[id] || get(k, "fallback") != nil {
					t.Fatalf("claim %d: got %s again or a fallback key", i, id)
				}
				seen[id] = true
				raw, _ := json.Marshal(k)
				if err := pdu.VerifyJSONSignature(raw, a1.UserID, "ed25519:"+a1.DeviceID, a1.pub); err != nil {
					t.Errorf("claimed key does not verify: %v", err)
				}
			}
		}
		s := a1.Must(200, "GET", "/_matrix/client/v3/sync", nil)
		if n := get(s.JSON, "device_one_time_keys_count", "signed_curve25519"); n != 0.0 {
			t.Errorf("sync count after exhaustion: want 0, got %v", n)
		}
		if fb := get(s.JSON, "device_unused_fallback_key_types"); fmt.Sprint(fb) != "[signed_curve25519]" {
			t.Errorf("unused fallback types before use: %v", fb)
		}
		for range 2 { // the fallback key is handed out again and again
			keys := claim(a1)
			if k := keys["signed_curve25519:FB"+a1.DeviceID]; get(k, "fallback") != true {
				t.Fatalf("exhausted device: want its fallback key, got %v", keys)
			}
		}
		s = a1.Must(200, "GET", "/_matrix/client/v3/sync", nil)
		if fb, _ := get(s.JSON, "device_unused_fallback_key_types").([]any); fb == nil || len(fb) != 0 {
			t.Errorf("unused fallback types after use: want [], got %v", get(s.JSON, "device_unused_fallback_key_types"))
		}
		// Another device's keys are untouched.
		s = a2.Must(200, "GET", "/_matrix/client/v3/sync", nil)
		if n := get(s.JSON, "device_one_time_keys_count", "signed_curve25519"); n != 2.0 {
			t.Errorf("other device's count: want 2, got %v", n)
		}
	})
	t.Run("unknown device and remote user", func(t *testing.T) {
		r := b1.Must(200, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{
			a1.UserID: map[string]any{"NOSUCHDEVICE": "signed_curve25519"}, "@carol:elsewhere.example": map[string]any{"X": "signed_curve25519"},
		}})
		if get(r.JSON, "one_time_keys", a1.UserID) != nil || get(r.JSON, "failures", "elsewhere.example") == nil {
			t.Errorf("want no keys and a failure for the remote server, got %s", r)
		}
	})
}

func TestUploadRejectsBadKeys(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	d := newDevice(srv.Register(t, servertest.UniqueName("alice"), password))
	other := newDevice(srv.Register(t, servertest.UniqueName("mallory"), password))
	otherKey := newDevice(d.Client) // same device, another (wrong) key pair

	good := d.uploadAll(t, 1)
	_ = good
	heldOTK := "signed_curve25519:" + d.DeviceID + "0"

	for _, tc := range []struct {
		name string
		body any
		code string
	}{
		{"device_keys not an object", `{"device_keys": "keys"}`, "M_BAD_JSON"},
		{"device_keys with keys of the wrong type", map[string]any{"device_keys": map[string]any{"user_id": d.UserID, "device_id": d.DeviceID, "keys": []string{"x"}}}, "M_BAD_JSON"},
		{"keys for another user", map[string]any{"device_keys": other.deviceKeys(t)}, "M_INVALID_PARAM"},
		{"keys for another device", map[string]any{"device_keys": func() map[string]any {
			k := otherKey.deviceKeys(t)
			k["device_id"] = "OTHERDEVICE"
			return sign(t, k, d.UserID, "ed25519:"+d.DeviceID, otherKey.priv)
		}()}, "M_INVALID_PARAM"},
		{"device keys signed by another key", map[string]any{"device_keys": func() map[string]any {
			k := d.deviceKeys(t)
			delete(k, "signatures")
			return sign(t, k, d.UserID, "ed25519:"+d.DeviceID, otherKey.priv)
		}()}, "M_INVALID_SIGNATURE"},
		{"device keys tampered after signing", map[string]any{"device_keys": func() map[string]any {
			k := d.deviceKeys(t)
			k["algorithms"] = []string{"m.olm.v1.curve25519-aes-sha2"}
			return k
		}()}, "M_INVALID_SIGNATURE"},
		{"one-time key with a bad signature", map[string]any{"one_time_keys": map[string]any{
			"signed_curve25519:BAD": otherKey.otk(t, false)}}, "M_INVALID_SIGNATURE"},
		{"unsigned signed_curve25519 key", map[string]any{"one_time_keys": map[string]any{
			"signed_curve25519:BARE": randomKey()}}, "M_INVALID_SIGNATURE"},
		{"one-time key ID without algorithm", map[string]any{"one_time_keys": map[string]any{"AAAA": d.otk(t, false)}}, "M_INVALID_PARAM"},
		{"one-time key that is a number", map[string]any{"one_time_keys": map[string]any{"curve25519:N": 5}}, "M_BAD_JSON"},
		{"one-time key ID held with other content", map[string]any{"one_time_keys": map[string]any{
			heldOTK: d.otk(t, false), "signed_curve25519:NEW": d.otk(t, false)}}, "M_INVALID_PARAM"},
		{"fallback key with a bad signature", map[string]any{"fallback_keys": map[string]any{
			"signed_curve25519:FB2": otherKey.otk(t, true)}}, "M_INVALID_SIGNATURE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.Do("POST", "/_matrix/client/v3/keys/upload", tc.body)
			if r.Status != 400 || r.Errcode() != tc.code {
				t.Fatalf("want 400 %s, got %s", tc.code, r)
			}
			// Nothing was stored: the held keys are those of the good upload.
			s := d.Must(200, "GET", "/_matrix/client/v3/sync", nil)
			if n := get(s.JSON, "device_one_time_keys_count", "signed_curve25519"); n != 1.0 {
				t.Errorf("one-time key count changed to %v", n)
			}
			q := other.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{d.UserID: []string{}}})
			raw, _ := json.Marshal(get(q.JSON, "device_keys", d.UserID, d.DeviceID))
			if pdu.VerifyJSONSignature(raw, d.UserID, "ed25519:"+d.DeviceID, d.pub) != nil {
				t.Errorf("the device's good keys were replaced: %s", raw)
			}
			if get(q.JSON, "device_keys", other.UserID) != nil {
				t.Errorf("keys stored for another user")
			}
		})
	}
	t.Run("the same one-time key again is fine", func(t *testing.T) {
		k := d.otk(t, false)
		for range 2 {
			d.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:SAME": k}})
		}
	})
}

// crossSigning is a user's three cross-signing key pairs.
type crossSigning struct {
	master, self, user ed25519.PrivateKey
}

func newCrossSigning() *crossSigning {
	gen := func() ed25519.PrivateKey { _, p, _ := ed25519.GenerateKey(rand.Reader); return p }
	return &crossSigning{master: gen(), self: gen(), user: gen()}
}

func pubOf(k ed25519.PrivateKey) string { return b64.EncodeToString(k.Public().(ed25519.PublicKey)) }

func (cs *crossSigning) keys(t *testing.T, userID string) map[string]any {
	mk := func(usage string, k ed25519.PrivateKey) map[string]any {
		return map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]any{"ed25519:" + pubOf(k): pubOf(k)}}
	}
	mp := "ed25519:" + pubOf(cs.master)
	return map[string]any{
		"master_key":       mk("master", cs.master),
		"self_signing_key": sign(t, mk("self_signing", cs.self), userID, mp, cs.master),
		"user_signing_key": sign(t, mk("user_signing", cs.user), userID, mp, cs.master),
	}
}

func TestCrossSigning(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	alice := newDevice(srv.Register(t, servertest.UniqueName("alice"), password))
	bob := newDevice(srv.Register(t, servertest.UniqueName("bob"), password))
	alice.uploadAll(t, 1)
	bob.uploadAll(t, 1)
	acs, bcs := newCrossSigning(), newCrossSigning()
	const up = "/_matrix/client/v3/keys/device_signing/upload"

	t.Run("self-signing key not signed by the master key", func(t *testing.T) {
		k := acs.keys(t, alice.UserID)
		k["self_signing_key"] = sign(t, map[string]any{"user_id": alice.UserID, "usage": []string{"self_signing"},
			"keys": map[string]any{"ed25519:" + pubOf(acs.self): pubOf(acs.self)}}, alice.UserID, "ed25519:"+pubOf(acs.master), acs.self)
		if r := alice.Do("POST", up, k); r.Status != 400 || r.Errcode() != "M_INVALID_SIGNATURE" {
			t.Fatalf("want 400 M_INVALID_SIGNATURE, got %s", r)
		}
	})
	akeys := acs.keys(t, alice.UserID)
	t.Run("first upload needs no UIA, nor a repeat", func(t *testing.T) {
		alice.Must(200, "POST", up, akeys)
		alice.Must(200, "POST", up, akeys)
		bob.Must(200, "POST", up, bcs.keys(t, bob.UserID))
	})
	t.Run("replacing keys needs the password", func(t *testing.T) {
		replacement := newCrossSigning().keys(t, alice.UserID)
		r := alice.Do("POST", up, replacement)
		if r.Status != 401 || r.Str("session") == "" {
			t.Fatalf("want a 401 UIA challenge, got %s", r)
		}
		// Not done: alice keeps her keys for the rest of the test.
	})

	const sigUp = "/_matrix/client/v3/keys/signatures/upload"
	t.Run("signatures: good ones stored, bad ones in failures", func(t *testing.T) {
		q := alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}, bob.UserID: []string{}}})
		myDevice, _ := get(q.JSON, "device_keys", alice.UserID, alice.DeviceID).(map[string]any)
		bobMaster, _ := get(q.JSON, "master_keys", bob.UserID).(map[string]any)
		if myDevice == nil || bobMaster == nil {
			t.Fatalf("query: %s", q)
		}
		delete(myDevice, "unsigned")
		signedDevice := sign(t, myDevice, alice.UserID, "ed25519:"+pubOf(acs.self), acs.self)
		signedBob := sign(t, bobMaster, alice.UserID, "ed25519:"+pubOf(acs.user), acs.user)
		forged := sign(t, map[string]any{"user_id": bob.UserID, "usage": []string{"master"}, "keys": bobMaster["keys"]},
			alice.UserID, "ed25519:"+pubOf(acs.user), acs.self) // wrong private key

		r := alice.Must(200, "POST", sigUp, map[string]any{alice.UserID: map[string]any{alice.DeviceID: signedDevice}, bob.UserID: map[string]any{pubOf(bcs.master): signedBob}})
		if f, _ := r.JSON["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("good signatures failed: %s", r)
		}
		r = alice.Must(200, "POST", sigUp, map[string]any{bob.UserID: map[string]any{pubOf(bcs.master): forged}})
		if get(r.JSON, "failures", bob.UserID, pubOf(bcs.master), "errcode") != "M_INVALID_SIGNATURE" {
			t.Fatalf("forged signature: want a failure, got %s", r)
		}

		q = alice.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}, bob.UserID: []string{}}})
		if get(q.JSON, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID, "ed25519:"+pubOf(acs.self)) == nil {
			t.Errorf("self-signing signature not on the device: %s", q)
		}
		if s := get(q.JSON, "master_keys", bob.UserID, "signatures", alice.UserID, "ed25519:"+pubOf(acs.user)); s != get(signedBob, "signatures", alice.UserID, "ed25519:"+pubOf(acs.user)) {
			t.Errorf("alice's signature on bob's master key: got %v", s)
		}
		if get(q.JSON, "user_signing_keys", alice.UserID) == nil || get(q.JSON, "user_signing_keys", bob.UserID) != nil {
			t.Errorf("user-signing keys: want alice's own only, got %v", q.JSON["user_signing_keys"])
		}
		if get(q.JSON, "self_signing_keys", bob.UserID) == nil {
			t.Errorf("bob's self-signing key missing")
		}
		// Bob does not see alice's user-signing signature on his key.
		qb := bob.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
		if get(qb.JSON, "master_keys", bob.UserID, "signatures", alice.UserID) != nil {
			t.Errorf("bob sees alice's private signature")
		}
	})
	t.Run("replacing keys with the password", func(t *testing.T) {
		ncs := newCrossSigning()
		replacement := ncs.keys(t, alice.UserID)
		r := alice.Do("POST", up, replacement)
		replacement["auth"] = servertest.PasswordAuth(r.Str("session"), alice.UserID, password)
		alice.Must(200, "POST", up, replacement)
		q := bob.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
		if got := get(q.JSON, "master_keys", alice.UserID, "keys", "ed25519:"+pubOf(ncs.master)); got != pubOf(ncs.master) {
			t.Errorf("master key not replaced: %s", q)
		}
	})
}

// syncFrom syncs from since (long-polling up to timeout ms) and returns
// the response and its next_batch.
func syncFrom(t *testing.T, c *device, since string, timeout int) (map[string]any, string) {
	t.Helper()
	path := "/_matrix/client/v3/sync?timeout=" + fmt.Sprint(timeout)
	if since != "" {
		path += "&since=" + url.QueryEscape(since)
	}
	r := c.Must(200, "GET", path, nil)
	return r.JSON, r.Str("next_batch")
}

func list(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func changed(resp map[string]any) []string {
	if v := get(resp, "device_lists", "changed"); v != nil {
		return list(v)
	}
	return nil
}

func left(resp map[string]any) []string {
	if v := get(resp, "device_lists", "left"); v != nil {
		return list(v)
	}
	return nil
}

func TestDeviceListsInSync(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	alice := servertest.UniqueName("alice")
	a1 := newDevice(srv.Register(t, alice, password))
	a2 := newDevice(srv.Login(t, alice, password))
	bob := newDevice(srv.Register(t, servertest.UniqueName("bob"), password))
	carol := newDevice(srv.Register(t, servertest.UniqueName("carol"), password))

	r := a1.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"preset":        "public_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}},
	})
	roomID := r.Str("room_id")
	bob.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{})

	_, since := syncFrom(t, bob, "", 0)
	start := since

	t.Run("a device uploads keys", func(t *testing.T) {
		done := make(chan map[string]any)
		go func() { resp, next := syncFrom(t, bob, since, 10000); since = next; done <- resp }()
		a2.uploadAll(t, 1)
		if resp := <-done; !slices.Contains(changed(resp), a1.UserID) {
			t.Fatalf("bob's long-poll: want %s in device_lists.changed, got %v", a1.UserID, get(resp, "device_lists"))
		}
	})
	t.Run("a device is deleted", func(t *testing.T) {
		done := make(chan map[string]any)
		go func() { resp, next := syncFrom(t, bob, since, 10000); since = next; done <- resp }()
		a2.Must(200, "POST", "/_matrix/client/v3/logout", map[string]any{})
		if resp := <-done; !slices.Contains(changed(resp), a1.UserID) {
			t.Fatalf("want %s in device_lists.changed, got %v", a1.UserID, get(resp, "device_lists"))
		}
		q := bob.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{a1.UserID: []string{}}})
		if get(q.JSON, "device_keys", a1.UserID, a2.DeviceID) != nil {
			t.Errorf("the deleted device's keys are still served")
		}
	})
	t.Run("a user who never shared a room joins", func(t *testing.T) {
		_, aSince := syncFrom(t, a1, "", 0)
		_, cSince := syncFrom(t, carol, "", 0)
		carol.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{})
		resp, next := syncFrom(t, bob, since, 10000)
		since = next
		if !slices.Contains(changed(resp), carol.UserID) {
			t.Errorf("bob: want %s in device_lists.changed, got %v", carol.UserID, get(resp, "device_lists"))
		}
		aresp, _ := syncFrom(t, a1, aSince, 10000)
		if !slices.Contains(changed(aresp), carol.UserID) {
			t.Errorf("alice: want %s in device_lists.changed, got %v", carol.UserID, get(aresp, "device_lists"))
		}
		// The joiner, in turn, must fetch everyone's keys in the room.
		cresp, _ := syncFrom(t, carol, cSince, 10000)
		if got := changed(cresp); !slices.Contains(got, a1.UserID) || !slices.Contains(got, bob.UserID) {
			t.Errorf("carol: want alice and bob in device_lists.changed, got %v", get(cresp, "device_lists"))
		}
	})
	t.Run("a user leaves the last shared room", func(t *testing.T) {
		carol.Must(200, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/leave", map[string]any{})
		resp, next := syncFrom(t, bob, since, 10000)
		since = next
		if !slices.Contains(left(resp), carol.UserID) {
			t.Errorf("want %s in device_lists.left, got %v", carol.UserID, get(resp, "device_lists"))
		}
		if slices.Contains(left(resp), a1.UserID) {
			t.Errorf("alice still shares the room, yet is in left")
		}
	})
	t.Run("own new keys", func(t *testing.T) {
		done := make(chan map[string]any)
		go func() { resp, next := syncFrom(t, bob, since, 10000); since = next; done <- resp }()
		bob.uploadAll(t, 3)
		resp := <-done
		if !slices.Contains(changed(resp), bob.UserID) {
			t.Errorf("want bob himself in device_lists.changed, got %v", get(resp, "device_lists"))
		}
		if n := get(resp, "device_one_time_keys_count", "signed_curve25519"); n != 3.0 {
			t.Errorf("one-time key count: want 3, got %v", n)
		}
	})
	t.Run("keys/changes", func(t *testing.T) {
		r := bob.Must(200, "GET", "/_matrix/client/v3/keys/changes?from="+url.QueryEscape(start)+"&to="+url.QueryEscape(since), nil)
		got := list(r.JSON["changed"])
		if !slices.Contains(got, a1.UserID) || !slices.Contains(got, bob.UserID) {
			t.Errorf("changed: want alice and bob, got %v", got)
		}
		if !slices.Contains(list(r.JSON["left"]), carol.UserID) {
			t.Errorf("left: want carol, got %s", r)
		}
		r = bob.Must(200, "GET", "/_matrix/client/v3/keys/changes?from="+url.QueryEscape(since)+"&to="+url.QueryEscape(since), nil)
		if len(list(r.JSON["changed"])) != 0 {
			t.Errorf("empty range: %s", r)
		}
		if r := bob.Do("GET", "/_matrix/client/v3/keys/changes?from=garbage", nil); r.Status != 400 {
			t.Errorf("bad token: want 400, got %s", r)
		}
	})
}

// One-time keys are claimed oldest upload first, whatever their IDs
// (Complement TestKeyClaimOrdering).
func TestClaimOldestFirst(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := newDevice(s.Register(t, "alice", "pw"))
	bob := s.Register(t, "bob", "pw")
	alice.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{
		"device_keys": alice.deviceKeys(t), "one_time_keys": map[string]any{"signed_curve25519:1": alice.otk(t, false)},
	})
	alice.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{
		"one_time_keys": map[string]any{"signed_curve25519:0": alice.otk(t, false)},
	})
	claim := map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}}
	for _, want := range []string{"signed_curve25519:1", "signed_curve25519:0"} {
		r := bob.Must(200, "POST", "/_matrix/client/v3/keys/claim", claim)
		keys, _ := get(r.JSON, "one_time_keys", alice.UserID, alice.DeviceID).(map[string]any)
		if _, ok := keys[want]; !ok || len(keys) != 1 {
			t.Fatalf("claim: got %v, want %s", keys, want)
		}
	}
}

// Device keys without the device's self-signature are stored and served
// as sent, as Synapse stores them (Complement's device-list tests upload
// such keys): whoever uses them checks the signature. A wrong
// self-signature is still refused (TestUploadRejectsBadKeys).
func TestUnsignedDeviceKeysAccepted(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	d := newDevice(s.Register(t, "alice", password))
	other := s.Register(t, "bob", password)
	k := d.deviceKeys(t)
	k["signatures"] = map[string]any{}
	d.Must(200, "POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": k})
	q := other.Must(200, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{d.UserID: []string{}}})
	if got := get(q.JSON, "device_keys", d.UserID, d.DeviceID, "keys", "ed25519:"+d.DeviceID); got != d.pub {
		t.Fatalf("unsigned device keys in bob's query: %v, want the ed25519 key %s", got, d.pub)
	}
}
