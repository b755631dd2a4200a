//go:build goolm

package e2ee_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	goolmaccount "maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"hearth/server/servertest"
)

const password = "correct horse battery"

// waitFor is how long a device may take to see something another device
// did: sync wakes within milliseconds, so this only bounds a broken run.
const waitFor = 15 * time.Second

// device is one logged-in client device with its own olm account, crypto
// store and (once started) its own /sync loop, as a phone or a laptop has.
type device struct {
	t    *testing.T
	name string
	cli  *mautrix.Client
	ch   *cryptohelper.CryptoHelper
	mach *crypto.OlmMachine
	// roomID is the family room the device sends to.
	roomID id.RoomID

	mu       sync.Mutex
	messages []*event.Event // decrypted m.room.message events, in arrival order
	changed  chan struct{}  // closed and replaced whenever messages grows
	stop     context.CancelFunc
	stopped  chan struct{}
}

// newDevice logs localpart in (registering it first if register) and sets
// up mautrix's crypto helper with in-memory stores: the helper's SQLite
// store needs cgo, the memory stores do not.
func newDevice(t *testing.T, s *servertest.Server, localpart, name string, register bool) *device {
	t.Helper()
	var c *servertest.Client
	if register {
		c = s.Register(t, localpart, password)
	} else {
		c = s.Login(t, localpart, password)
	}
	cli, err := mautrix.NewClient(s.URL, id.UserID(c.UserID), c.Token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = id.DeviceID(c.DeviceID)
	if os.Getenv("HEARTH_TEST_LOG") != "" {
		cli.Log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Str("device", name).Timestamp().Logger()
	}
	cli.StateStore = mautrix.NewMemoryStateStore()
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	// Global listeners run before typed ones, so the state store knows a
	// room is encrypted and who is in it before the olm machine asks.
	syncer.OnEvent(cli.StateStoreSyncHandler)
	ch, err := cryptohelper.NewCryptoHelper(cli, []byte("pickle "+name), crypto.NewMemoryStore(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Init(context.Background()); err != nil {
		t.Fatalf("%s: crypto init: %v", name, err)
	}
	cli.Crypto = ch
	// A client queries its own user's devices at login (Element does);
	// mautrix-go otherwise counts its own user as tracked with only itself
	// and would never share room keys with devices that existed before it.
	if _, err := ch.Machine().FetchKeys(context.Background(), []id.UserID{cli.UserID}, true); err != nil {
		t.Fatalf("%s: fetch own devices: %v", name, err)
	}
	d := &device{t: t, name: name, cli: cli, ch: ch, mach: ch.Machine(), changed: make(chan struct{})}
	ch.DecryptErrorCallback = func(evt *event.Event, err error) {
		t.Logf("%s: could not decrypt %s: %v", name, evt.ID, err)
	}
	syncer.OnEventType(event.EventMessage, func(_ context.Context, evt *event.Event) {
		if evt.Mautrix.EventSource&event.SourceDecrypted == 0 {
			return
		}
		d.mu.Lock()
		d.messages = append(d.messages, evt)
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
	})
	t.Cleanup(d.stopSync)
	return d
}

// startSync runs the device's own /sync loop until the test ends.
func (d *device) startSync() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stop, d.stopped = cancel, make(chan struct{})
	go func() {
		defer close(d.stopped)
		if err := d.cli.SyncWithContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.t.Errorf("%s: sync loop: %v", d.name, err)
		}
	}()
}

// paused runs f, a call on the device's OlmMachine, with the device's
// sync loop stopped: mautrix's machine and memory store do not take a
// call while the loop updates them (device lists, cross-signing keys),
// and a concurrent map write crashed a run.
// trust is ResolveTrustContext with the sync loop paused.
func (d *device) trust(ctx context.Context, dev *id.Device) (trust id.TrustState, err error) {
	d.paused(func() { trust, err = d.mach.ResolveTrustContext(ctx, dev) })
	return trust, err
}

func (d *device) pausedErr(f func() error) (err error) {
	d.paused(func() { err = f() })
	return err
}

func (d *device) paused(f func()) {
	if d.stop != nil {
		d.stopSync()
		defer d.startSync()
	}
	f()
}

func (d *device) stopSync() {
	if d.stop != nil {
		d.stop()
		<-d.stopped
		d.stop = nil
	}
}

// waitMessage waits until the device has decrypted a message with body and
// returns it.
func (d *device) waitMessage(body string) *event.Event {
	d.t.Helper()
	deadline := time.After(waitFor)
	for {
		d.mu.Lock()
		for _, evt := range d.messages {
			if evt.Content.AsMessage().Body == body {
				d.mu.Unlock()
				return evt
			}
		}
		changed := d.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			d.t.Fatalf("%s never decrypted %q", d.name, body)
			return nil
		}
	}
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *device) send(body string) id.EventID {
	d.t.Helper()
	resp, err := d.cli.SendText(context.Background(), d.room(), body)
	if err != nil {
		d.t.Fatalf("%s: send %q: %v", d.name, body, err)
	}
	return resp.EventID
}

func (d *device) room() id.RoomID { return d.roomID }

// family starts a Hearth and sets up the scenario: alice with a
// phone and a laptop, bob with a phone, all in one encrypted room, every
// device syncing. It returns alice's localpart. alice's laptop logs in last,
// while the phone is syncing, so the phone learns of it only from
// device_lists.changed in its own /sync.
func family(t *testing.T) (s *servertest.Server, alice string, alicePhone, aliceLaptop, bobPhone *device) {
	t.Helper()
	s = servertest.Start(t, servertest.Options{})
	ctx := context.Background()
	alice, bob := servertest.UniqueName("alice"), servertest.UniqueName("bob")
	alicePhone = newDevice(t, s, alice, "alice phone", true)
	bobPhone = newDevice(t, s, bob, "bob phone", true)
	created := alicePhone.createEncryptedRoom(bobPhone)
	if _, err := bobPhone.cli.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	alicePhone.roomID, bobPhone.roomID = created.RoomID, created.RoomID
	alicePhone.startSync()
	bobPhone.startSync()
	alicePhone.waitJoined(bobPhone.cli.UserID)
	bobPhone.waitJoined(alicePhone.cli.UserID)

	aliceLaptop = newDevice(t, s, alice, "alice laptop", false)
	aliceLaptop.roomID = created.RoomID
	aliceLaptop.startSync()
	aliceLaptop.waitJoined(bobPhone.cli.UserID)
	alicePhone.waitDevice(aliceLaptop)
	return s, alice, alicePhone, aliceLaptop, bobPhone
}

// waitDevice waits until d's olm machine knows other's device, which for a
// device logged in after d started tracking its user means d's /sync
// reported the user in device_lists.changed.
func (d *device) waitDevice(other *device) {
	d.t.Helper()
	eventually(d.t, d.name+" to learn of "+other.name+" from device_lists.changed", func() bool {
		dev, _ := d.mach.CryptoStore.GetDevice(context.Background(), other.cli.UserID, other.cli.DeviceID)
		return dev != nil
	})
}

// waitJoined waits until the device's sync has shown it the room as
// encrypted with user joined: only then does it encrypt for user's devices.
func (d *device) waitJoined(user id.UserID) {
	d.t.Helper()
	ctx := context.Background()
	eventually(d.t, d.name+" to see "+user.String()+" joined to the encrypted room", func() bool {
		enc, _ := d.cli.StateStore.IsEncrypted(ctx, d.room())
		joined := d.cli.StateStore.IsInRoom(ctx, d.room(), user)
		return enc && joined
	})
}

// TestMessagesDecryptOnEveryOtherDevice: two users, three devices; each
// device's message is decrypted by the two others. The first message of
// each device is a full E2EE round as the client sees it: /keys/query and
// /keys/claim for the others' devices, the room key sent to each device
// olm-encrypted by /sendToDevice, the megolm event sent, and the others'
// sync loops wake, decrypt the olm message, store the room key and decrypt
// the event.
func TestMessagesDecryptOnEveryOtherDevice(t *testing.T) {
	_, _, alicePhone, aliceLaptop, bobPhone := family(t)
	all := []*device{alicePhone, aliceLaptop, bobPhone}
	for round := 1; round <= 2; round++ {
		for _, sender := range all {
			body := fmt.Sprintf("%s says hello, round %d", sender.name, round)
			start := time.Now()
			eventID := sender.send(body)
			for _, d := range all {
				if d == sender {
					continue
				}
				evt := d.waitMessage(body)
				if evt.ID != eventID || evt.Sender != sender.cli.UserID {
					t.Errorf("%s decrypted %q as %s from %s; want %s from %s", d.name, body, evt.ID, evt.Sender, eventID, sender.cli.UserID)
				}
				if round == 1 {
					t.Logf("E2EE round %s → %s (key query/claim → to-device → decrypt): %v", sender.name, d.name, time.Since(start))
				}
			}
		}
	}
}

// TestLateDeviceGetsHistoryByKeyRequest: alice logs in on a tablet after
// the conversation happened. mautrix shares keys with its own user's other
// devices only when they are cross-signed (ShareKeysMinTrust is
// TrustStateCrossSignedTOFU), which is what a verification does: so alice's
// phone bootstraps cross-signing (the first upload needs no UIA), signs
// itself and the tablet, and the tablet signs the master key with its
// device key. Then the tablet asks for the room keys by an m.room_key_request
// to-device message, the phone answers with an olm-encrypted
// m.forwarded_room_key, and the tablet decrypts the history.
func TestLateDeviceGetsHistoryByKeyRequest(t *testing.T) {
	s, alice, alicePhone, _, bobPhone := family(t)
	ctx := context.Background()
	bobPhone.send("history from bob")
	alicePhone.send("history from alice")
	alicePhone.waitMessage("history from bob")

	// Cross-signing bootstrap on the phone.
	keys, err := alicePhone.mach.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	uia := func(resp *mautrix.RespUserInteractive) any {
		return servertest.PasswordAuth(resp.Session, string(alicePhone.cli.UserID), password)
	}
	if err := alicePhone.pausedErr(func() error { return alicePhone.mach.PublishCrossSigningKeys(ctx, keys, uia) }); err != nil {
		t.Fatalf("publish cross-signing keys: %v", err)
	}
	if err := alicePhone.pausedErr(func() error { return alicePhone.mach.SignOwnDevice(ctx, alicePhone.mach.OwnIdentity()) }); err != nil {
		t.Fatalf("phone signs itself: %v", err)
	}

	tablet := newDevice(t, s, alice, "alice tablet", false)
	tablet.roomID = alicePhone.roomID
	var tabletOnPhone *id.Device
	alicePhone.paused(func() {
		tabletOnPhone, err = alicePhone.mach.GetOrFetchDevice(ctx, tablet.cli.UserID, tablet.cli.DeviceID)
	})
	if err != nil {
		t.Fatalf("phone fetches the tablet: %v", err)
	}
	if err := alicePhone.pausedErr(func() error { return alicePhone.mach.SignOwnDevice(ctx, tabletOnPhone) }); err != nil {
		t.Fatalf("phone verifies the tablet: %v", err)
	}
	if err := tablet.mach.SignOwnMasterKey(ctx); err != nil {
		t.Fatalf("tablet trusts the master key: %v", err)
	}
	if trust, err := alicePhone.trust(ctx, tabletOnPhone); err != nil || trust < id.TrustStateCrossSignedTOFU {
		t.Fatalf("phone's trust in the tablet = %v, %v; want cross-signed", trust, err)
	}
	phoneOnTablet := tablet.fetchDevice(alicePhone)
	if trust, err := tablet.trust(ctx, phoneOnTablet); err != nil || trust != id.TrustStateCrossSignedVerified {
		t.Errorf("tablet's trust in the phone = %v, %v; want cross-signed verified", trust, err)
	}

	// The tablet's first sync brings the history it cannot read yet.
	var history []*event.Event
	var historyMu sync.Mutex
	tablet.cli.Syncer.(*mautrix.DefaultSyncer).OnEventType(event.EventEncrypted, func(_ context.Context, evt *event.Event) {
		historyMu.Lock()
		history = append(history, evt)
		historyMu.Unlock()
	})
	tablet.startSync()
	eventually(t, "the tablet to sync the two encrypted history events", func() bool {
		historyMu.Lock()
		defer historyMu.Unlock()
		return len(history) >= 2
	})
	start := time.Now()
	historyMu.Lock()
	defer historyMu.Unlock()
	for _, evt := range history {
		content := evt.Content.AsEncrypted()
		err := tablet.mach.SendRoomKeyRequest(ctx, evt.RoomID, content.SenderKey, content.SessionID, "", map[id.UserID][]id.DeviceID{
			alicePhone.cli.UserID: {alicePhone.cli.DeviceID},
		})
		if err != nil {
			t.Fatalf("key request: %v", err)
		}
	}
	// mautrix's helper retries undecryptable events only from incremental
	// syncs, so the tablet decrypts its initial sync's history itself once
	// the forwarded keys are in.
	got := map[string]bool{}
	for _, evt := range history {
		content := evt.Content.AsEncrypted()
		if !tablet.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, waitFor) {
			t.Fatalf("the tablet never received the key of session %s", content.SessionID)
		}
		decrypted, err := tablet.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			t.Fatalf("tablet decrypts %s: %v", evt.ID, err)
		}
		got[decrypted.Content.AsMessage().Body] = true
	}
	t.Logf("key request → forwarded room key → history decrypted: %v", time.Since(start))
	if !got["history from bob"] || !got["history from alice"] {
		t.Errorf("the tablet decrypted %v; want both history messages", got)
	}

	// Bob sees alice's devices as cross-signed by her (trust on first use).
	tabletOnBob := bobPhone.fetchDevice(tablet)
	if trust, err := bobPhone.trust(ctx, tabletOnBob); err != nil || trust != id.TrustStateCrossSignedTOFU {
		t.Errorf("bob's trust in alice's tablet = %v, %v; want cross-signed TOFU", trust, err)
	}

	// Between users: bob bootstraps cross-signing too and signs his phone;
	// alice's phone verifies bob by signing his master key with her
	// user-signing key, and from then on bob's phone is verified for her.
	bobKeys, err := bobPhone.mach.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := bobPhone.pausedErr(func() error { return bobPhone.mach.PublishCrossSigningKeys(ctx, bobKeys, nil) }); err != nil {
		t.Fatalf("bob publishes cross-signing keys: %v", err)
	}
	if err := bobPhone.pausedErr(func() error { return bobPhone.mach.SignOwnDevice(ctx, bobPhone.mach.OwnIdentity()) }); err != nil {
		t.Fatalf("bob signs his phone: %v", err)
	}
	bobOnAlice := alicePhone.fetchDevice(bobPhone)
	if trust, _ := alicePhone.trust(ctx, bobOnAlice); trust != id.TrustStateCrossSignedTOFU {
		t.Errorf("alice's trust in bob's phone before verifying bob = %v; want cross-signed TOFU", trust)
	}
	if err := alicePhone.pausedErr(func() error { return alicePhone.mach.SignUser(ctx, bobPhone.cli.UserID, bobKeys.MasterKey.PublicKey()) }); err != nil {
		t.Fatalf("alice signs bob's master key: %v", err)
	}
	bobOnAlice = alicePhone.fetchDevice(bobPhone)
	if trust, err := alicePhone.trust(ctx, bobOnAlice); err != nil || trust != id.TrustStateCrossSignedVerified {
		t.Errorf("alice's trust in bob's phone after verifying bob = %v, %v; want cross-signed verified", trust, err)
	}
}

// createEncryptedRoom creates a private, megolm-encrypted room and
// invites invitee to it.
func (d *device) createEncryptedRoom(invitee *device) *mautrix.RespCreateRoom {
	d.t.Helper()
	created, err := d.cli.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: []id.UserID{invitee.cli.UserID},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		d.t.Fatalf("%s: create room: %v", d.name, err)
	}
	return created
}

// fetchDevice asks the server for other's device keys afresh, as a device
// does after device_lists.changed, and returns other's device.
func (d *device) fetchDevice(other *device) *id.Device {
	d.t.Helper()
	var devices map[id.UserID]map[id.DeviceID]*id.Device
	var err error
	d.paused(func() { devices, err = d.mach.FetchKeys(context.Background(), []id.UserID{other.cli.UserID}, true) })
	if err != nil {
		d.t.Fatalf("%s: fetch keys of %s: %v", d.name, other.cli.UserID, err)
	}
	dev := devices[other.cli.UserID][other.cli.DeviceID]
	if dev == nil {
		d.t.Fatalf("%s: %s has no device %s", d.name, other.cli.UserID, other.cli.DeviceID)
	}
	return dev
}

// TestFallbackKeyWhenOneTimeKeysRunOut: bob's new laptop has published its
// one-time keys and a fallback key and is offline; someone claims all its
// one-time keys. The server then hands out the fallback key, alice's phone
// builds its olm session on it, and the laptop, once back, decrypts the
// room key and the message and can answer over the new session.
func TestFallbackKeyWhenOneTimeKeysRunOut(t *testing.T) {
	s, _, alicePhone, aliceLaptop, bobPhone := family(t)
	ctx := context.Background()
	bob := strings.TrimPrefix(strings.Split(string(bobPhone.cli.UserID), ":")[0], "@")
	laptop := newDevice(t, s, bob, "bob laptop", false)
	laptop.roomID = alicePhone.roomID

	// mautrix-go publishes no fallback key of its own; its goolm account
	// can make one, which is what other clients upload.
	acct := laptop.mach.GetAccount()
	goolm, ok := acct.Internal.(*goolmaccount.Account)
	if !ok {
		t.Fatalf("olm account is %T; run with -tags goolm", acct.Internal)
	}
	if err := goolm.GenFallbackKey(); err != nil {
		t.Fatal(err)
	}
	fallbackKeys := map[id.KeyID]mautrix.OneTimeKey{}
	for keyID, pub := range goolm.FallbackKey() {
		key := mautrix.OneTimeKey{Key: pub, Fallback: true, IsSigned: true}
		sig, err := acct.SignJSON(&key)
		if err != nil {
			t.Fatal(err)
		}
		key.Signatures = signatures.NewSingleSignature(laptop.cli.UserID, id.KeyAlgorithmEd25519, laptop.cli.DeviceID.String(), sig)
		fallbackKeys[id.NewKeyID(id.KeyAlgorithmSignedCurve25519, keyID)] = key
	}
	var uploaded mautrix.RespUploadKeys
	if _, err := laptop.cli.MakeRequest(ctx, "POST", laptop.cli.BuildClientURL("v3", "keys", "upload"),
		map[string]any{"fallback_keys": fallbackKeys}, &uploaded); err != nil {
		t.Fatalf("upload fallback key: %v", err)
	}
	goolm.MarkKeysAsPublished()
	if before, err := laptop.cli.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
		t.Fatal(err)
	} else if len(before.FallbackKeys) != 1 || before.FallbackKeys[0] != id.KeyAlgorithmSignedCurve25519 {
		t.Fatalf("sync lists unused fallback key types %v before any claim; want [signed_curve25519]", before.FallbackKeys)
	}
	published := uploaded.OneTimeKeyCounts.SignedCurve25519
	if published == 0 {
		t.Fatal("the laptop published no one-time keys")
	}

	// Someone (here bob's own phone, by hand) claims every one-time key.
	claim := func() (id.KeyID, mautrix.OneTimeKey) {
		resp, err := bobPhone.cli.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
			laptop.cli.UserID: {laptop.cli.DeviceID: id.KeyAlgorithmSignedCurve25519},
		}})
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		for keyID, key := range resp.OneTimeKeys[laptop.cli.UserID][laptop.cli.DeviceID] {
			return keyID, key
		}
		t.Fatalf("claim returned no key: %+v", resp)
		return "", mautrix.OneTimeKey{}
	}
	for i := 0; i < published; i++ {
		if _, key := claim(); key.Fallback {
			t.Fatalf("claim %d of %d returned the fallback key", i+1, published)
		}
	}
	fallbackID, key := claim()
	if _, want := fallbackKeys[fallbackID]; !key.Fallback || !want {
		t.Fatalf("claim after %d one-time keys = %s %+v; want the fallback key", published, fallbackID, key)
	}

	// alice's phone must send the room key to the laptop on the fallback
	// key; a fresh megolm session makes sure it shares one at all.
	laptopOnPhone := alicePhone.fetchDevice(laptop)
	if sess, _ := alicePhone.mach.CryptoStore.GetLatestSession(ctx, laptopOnPhone.IdentityKey); sess != nil {
		t.Fatal("alice's phone already has an olm session with bob's laptop")
	}
	if err := alicePhone.mach.CryptoStore.RemoveOutboundGroupSession(ctx, alicePhone.room()); err != nil {
		t.Fatal(err)
	}
	alicePhone.send("to bob's laptop, on the fallback key")
	if sess, _ := alicePhone.mach.CryptoStore.GetLatestSession(ctx, laptopOnPhone.IdentityKey); sess == nil {
		t.Fatal("alice's phone made no olm session with bob's laptop")
	}
	var fallbackTypes []id.KeyAlgorithm
	var fallbackMu sync.Mutex
	laptop.cli.Syncer.(*mautrix.DefaultSyncer).OnSync(func(_ context.Context, resp *mautrix.RespSync, _ string) bool {
		fallbackMu.Lock()
		fallbackTypes = resp.FallbackKeys
		fallbackMu.Unlock()
		return true
	})
	laptop.startSync()
	laptop.waitMessage("to bob's laptop, on the fallback key")
	fallbackMu.Lock()
	for _, alg := range fallbackTypes {
		if alg == id.KeyAlgorithmSignedCurve25519 {
			t.Errorf("sync still lists %s in device_unused_fallback_key_types after the fallback key was claimed", alg)
		}
	}
	fallbackMu.Unlock()

	// The new session works the other way too.
	laptop.waitJoined(alicePhone.cli.UserID)
	laptop.send("bob's laptop answers")
	alicePhone.waitMessage("bob's laptop answers")
	aliceLaptop.waitMessage("bob's laptop answers")
}

// TestKeyBackupRoundTrip: alice's phone backs its room keys up to the
// server (megolm_backup.v1.curve25519-aes-sha2, encrypted to the backup's
// public key), a new device restores them with the backup's private key
// (what the user's recovery key holds) and decrypts the room's history.
func TestKeyBackupRoundTrip(t *testing.T) {
	s, alice, alicePhone, _, bobPhone := family(t)
	ctx := context.Background()
	bobPhone.send("backed up from bob")
	alicePhone.send("backed up from alice")
	alicePhone.waitMessage("backed up from bob")

	backupKey, err := backup.NewMegolmBackupKey()
	if err != nil {
		t.Fatal(err)
	}
	authData := backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))}
	sig, err := alicePhone.mach.GetAccount().SignJSON(authData)
	if err != nil {
		t.Fatal(err)
	}
	authData.Signatures = signatures.NewSingleSignature(alicePhone.cli.UserID, id.KeyAlgorithmEd25519, alicePhone.cli.DeviceID.String(), sig)
	created, err := alicePhone.cli.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
		Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: authData,
	})
	if err != nil {
		t.Fatalf("create backup version: %v", err)
	}

	sessions, err := alicePhone.mach.CryptoStore.GetGroupSessionsForRoom(ctx, alicePhone.room()).AsList()
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) < 2 {
		t.Fatalf("alice's phone has %d megolm sessions for the room; want bob's and its own", len(sessions))
	}
	req := mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{alicePhone.room(): {Sessions: map[id.SessionID]mautrix.ReqKeyBackupData{}}}}
	for _, sess := range sessions {
		first := sess.Internal.FirstKnownIndex()
		exported, err := sess.Internal.Export(first)
		if err != nil {
			t.Fatal(err)
		}
		encrypted, err := backup.EncryptSessionData(backupKey, backup.MegolmSessionData{
			Algorithm:          id.AlgorithmMegolmV1,
			ForwardingKeyChain: sess.ForwardingChains,
			SenderClaimedKeys:  backup.SenderClaimedKeys{Ed25519: sess.SigningKey},
			SenderKey:          sess.SenderKey,
			SessionKey:         string(exported),
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(encrypted)
		if err != nil {
			t.Fatal(err)
		}
		req.Rooms[alicePhone.room()].Sessions[sess.ID()] = mautrix.ReqKeyBackupData{
			FirstMessageIndex: int(first), SessionData: raw,
		}
	}
	put, err := alicePhone.cli.PutKeysInBackup(ctx, created.Version, &req)
	if err != nil {
		t.Fatalf("upload to backup: %v", err)
	}
	if put.Count != len(sessions) || put.ETag == "" {
		t.Errorf("backup upload answered count %d etag %q; want count %d and an etag", put.Count, put.ETag, len(sessions))
	}

	// A new device restores from the backup alone: no key sharing.
	restored := newDevice(t, s, alice, "alice new laptop", false)
	version, err := restored.mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey)
	if err != nil || version != created.Version {
		t.Fatalf("restore = version %q, %v; want version %q", version, err, created.Version)
	}
	msgs, err := restored.cli.Messages(ctx, alicePhone.room(), "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	got := map[string]bool{}
	for _, evt := range msgs.Chunk {
		if evt.Type != event.EventEncrypted {
			continue
		}
		evt.RoomID = alicePhone.room()
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			t.Fatal(err)
		}
		decrypted, err := restored.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			t.Errorf("restored device cannot decrypt %s: %v", evt.ID, err)
			continue
		}
		got[decrypted.Content.AsMessage().Body] = true
	}
	for _, want := range []string{"backed up from bob", "backed up from alice"} {
		if !got[want] {
			t.Errorf("restored device did not decrypt %q (got %v)", want, got)
		}
	}
}
