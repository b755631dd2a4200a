package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
)

// End-to-end encryption keys of local devices and users, and the stream
// of device-list changes /sync and /keys/changes read. Key objects are
// kept as the JSON the client uploaded (after validation by the caller),
// so that signatures over them stay verifiable.

func keyPrefix(parts ...string) []byte {
	var k []byte
	for _, p := range parts {
		k = append(append(k, p...), 0)
	}
	return k
}

// localUserID returns the user ID of a local localpart.
func (tx *Tx) localUserID(localpart string) string {
	return "@" + localpart + ":" + tx.ServerName()
}

// DeviceKeys returns a device's uploaded identity keys, or ErrNotFound.
func (tx *Tx) DeviceKeys(localpart, deviceID string) (json.RawMessage, error) {
	v := tx.btx.Bucket(bucketDeviceKeys).Get(deviceKey(localpart, deviceID))
	if v == nil {
		return nil, ErrNotFound
	}
	return append(json.RawMessage(nil), v...), nil
}

// PutDeviceKeys stores a device's identity keys. New or different keys
// are a device-list change, recorded at a new stream position, which it
// returns (0 when the keys were already there unchanged).
func (tx *Tx) PutDeviceKeys(localpart, deviceID string, keys json.RawMessage) (uint64, error) {
	if tx.btx.Bucket(bucketDevices).Get(deviceKey(localpart, deviceID)) == nil {
		return 0, fmt.Errorf("store: keys for unknown device %s/%s: %w", localpart, deviceID, ErrNotFound)
	}
	b := tx.btx.Bucket(bucketDeviceKeys)
	if bytes.Equal(b.Get(deviceKey(localpart, deviceID)), keys) {
		return 0, nil
	}
	if err := b.Put(deviceKey(localpart, deviceID), keys); err != nil {
		return 0, err
	}
	return tx.RecordDeviceListChange(tx.localUserID(localpart))
}

// One-time key records are the upload sequence number (8 bytes), then
// the key JSON: claims hand out the oldest key first, as Synapse does.

// OneTimeKey returns one unclaimed one-time key ("algorithm:id"), or
// ErrNotFound.
func (tx *Tx) OneTimeKey(localpart, deviceID, keyID string) (json.RawMessage, error) {
	v := tx.btx.Bucket(bucketOneTimeKeys).Get(append(keyPrefix(localpart, deviceID), keyID...))
	if len(v) < 8 {
		return nil, ErrNotFound
	}
	return append(json.RawMessage(nil), v[8:]...), nil
}

// PutOneTimeKey stores an unclaimed one-time key under "algorithm:id".
func (tx *Tx) PutOneTimeKey(localpart, deviceID, keyID string, key json.RawMessage) error {
	if !strings.Contains(keyID, ":") {
		return fmt.Errorf("store: one-time key ID %q has no algorithm", keyID)
	}
	b := tx.btx.Bucket(bucketOneTimeKeys)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(append(keyPrefix(localpart, deviceID), keyID...), append(u64(seq), key...))
}

// OneTimeKeyCounts counts a device's unclaimed one-time keys by
// algorithm.
func (tx *Tx) OneTimeKeyCounts(localpart, deviceID string) map[string]int {
	prefix := keyPrefix(localpart, deviceID)
	out := map[string]int{}
	c := tx.btx.Bucket(bucketOneTimeKeys).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		alg, _, _ := strings.Cut(string(k[len(prefix):]), ":")
		out[alg]++
	}
	return out
}

// ClaimedKey is a key handed out by ClaimKey.
type ClaimedKey struct {
	KeyID    string // "algorithm:id"
	Key      json.RawMessage
	Fallback bool
}

// ClaimKey hands out one key of algorithm for a device: an unclaimed
// one-time key, which is deleted, or else the device's fallback key,
// which is kept but marked used. It returns ErrNotFound when there is
// neither.
func (tx *Tx) ClaimKey(localpart, deviceID, algorithm string) (*ClaimedKey, error) {
	prefix := append(keyPrefix(localpart, deviceID), algorithm+":"...)
	b := tx.btx.Bucket(bucketOneTimeKeys)
	var oldestK, oldestV []byte
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) >= 8 && (oldestK == nil || binary.BigEndian.Uint64(v) < binary.BigEndian.Uint64(oldestV)) {
			oldestK, oldestV = append([]byte(nil), k...), append([]byte(nil), v...)
		}
	}
	if oldestK != nil {
		out := &ClaimedKey{KeyID: string(oldestK[len(prefix)-len(algorithm)-1:]), Key: append(json.RawMessage(nil), oldestV[8:]...)}
		return out, b.Delete(oldestK)
	}
	fb, err := tx.FallbackKey(localpart, deviceID, algorithm)
	if err != nil {
		return nil, err
	}
	if !fb.Used {
		fb.Used = true
		if err := tx.putJSON(bucketFallbackKeys, keyPrefix(localpart, deviceID, algorithm), fb); err != nil {
			return nil, err
		}
	}
	return &ClaimedKey{KeyID: fb.KeyID, Key: fb.Key, Fallback: true}, nil
}

// FallbackKey is a device's fallback key of one algorithm: handed out when
// its one-time keys have run out, and kept until replaced.
type FallbackKey struct {
	KeyID string          `json:"key_id"` // "algorithm:id"
	Key   json.RawMessage `json:"key"`
	Used  bool            `json:"used,omitempty"`
}

// FallbackKey returns a device's fallback key of algorithm, or
// ErrNotFound.
func (tx *Tx) FallbackKey(localpart, deviceID, algorithm string) (*FallbackKey, error) {
	var fb FallbackKey
	if err := tx.getJSON(bucketFallbackKeys, keyPrefix(localpart, deviceID, algorithm), &fb); err != nil {
		return nil, err
	}
	return &fb, nil
}

// PutFallbackKey sets a device's fallback key of an algorithm, replacing
// the previous one. Uploading the same key again keeps its used mark.
func (tx *Tx) PutFallbackKey(localpart, deviceID, keyID string, key json.RawMessage) error {
	alg, _, ok := strings.Cut(keyID, ":")
	if !ok {
		return fmt.Errorf("store: fallback key ID %q has no algorithm", keyID)
	}
	if old, err := tx.FallbackKey(localpart, deviceID, alg); err == nil && old.KeyID == keyID && bytes.Equal(old.Key, key) {
		return nil
	}
	return tx.putJSON(bucketFallbackKeys, keyPrefix(localpart, deviceID, alg), &FallbackKey{KeyID: keyID, Key: key})
}

// UnusedFallbackKeyTypes lists the algorithms of a device's fallback keys
// that have not been handed out.
func (tx *Tx) UnusedFallbackKeyTypes(localpart, deviceID string) ([]string, error) {
	prefix := keyPrefix(localpart, deviceID)
	out := []string{}
	c := tx.btx.Bucket(bucketFallbackKeys).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var fb FallbackKey
		if err := json.Unmarshal(v, &fb); err != nil {
			return nil, fmt.Errorf("store: decode fallback key: %w", err)
		}
		if !fb.Used {
			out = append(out, string(bytes.TrimSuffix(k[len(prefix):], []byte{0})))
		}
	}
	return out, nil
}

// deleteDeviceKeys removes everything a device published: identity keys,
// one-time and fallback keys, and signatures made over its keys.
func (tx *Tx) deleteDeviceKeys(localpart, deviceID string) error {
	if err := tx.btx.Bucket(bucketDeviceKeys).Delete(deviceKey(localpart, deviceID)); err != nil {
		return err
	}
	for _, p := range []struct {
		bucket []byte
		prefix []byte
	}{
		{bucketOneTimeKeys, keyPrefix(localpart, deviceID)},
		{bucketFallbackKeys, keyPrefix(localpart, deviceID)},
		{bucketKeySignatures, keyPrefix(localpart, deviceID)},
	} {
		b := tx.btx.Bucket(p.bucket)
		c := b.Cursor()
		for k, _ := c.Seek(p.prefix); k != nil && bytes.HasPrefix(k, p.prefix); k, _ = c.Seek(p.prefix) {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Cross-signing key usages.
const (
	UsageMaster      = "master"
	UsageSelfSigning = "self_signing"
	UsageUserSigning = "user_signing"
)

// CrossSigningKey returns a user's cross-signing key of a usage, or
// ErrNotFound.
func (tx *Tx) CrossSigningKey(localpart, usage string) (json.RawMessage, error) {
	v := tx.btx.Bucket(bucketCrossSigning).Get(keyPrefix(localpart, usage))
	if v == nil {
		return nil, ErrNotFound
	}
	return append(json.RawMessage(nil), v...), nil
}

// PutCrossSigningKeys replaces a user's cross-signing keys of the usages
// given (a map from usage to key JSON) and records one device-list change,
// whose position it returns. Signatures others made over a replaced key
// no longer apply and are dropped.
func (tx *Tx) PutCrossSigningKeys(localpart string, keys map[string]json.RawMessage, oldKeyIDs []string) (uint64, error) {
	b := tx.btx.Bucket(bucketCrossSigning)
	for usage, js := range keys {
		if err := b.Put(keyPrefix(localpart, usage), js); err != nil {
			return 0, err
		}
	}
	sigs := tx.btx.Bucket(bucketKeySignatures)
	for _, id := range oldKeyIDs {
		prefix := keyPrefix(localpart, id)
		c := sigs.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := sigs.Delete(k); err != nil {
				return 0, err
			}
		}
	}
	return tx.RecordDeviceListChange(tx.localUserID(localpart))
}

// PutKeySignature stores a signature made by signer's key signerKeyID
// ("ed25519:...") over a local user's key: a device (keyID is the device
// ID) or a cross-signing key (keyID is its public key).
func (tx *Tx) PutKeySignature(localpart, keyID, signer, signerKeyID, signature string) error {
	return tx.btx.Bucket(bucketKeySignatures).Put(append(keyPrefix(localpart, keyID, signer), signerKeyID...), []byte(signature))
}

// KeySignatures returns the signatures stored over a local user's key, by
// signer and signing key ID.
func (tx *Tx) KeySignatures(localpart, keyID string) map[string]map[string]string {
	prefix := keyPrefix(localpart, keyID)
	var out map[string]map[string]string
	c := tx.btx.Bucket(bucketKeySignatures).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		signer, signerKey, ok := strings.Cut(string(k[len(prefix):]), "\x00")
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]map[string]string{}
		}
		if out[signer] == nil {
			out[signer] = map[string]string{}
		}
		out[signer][signerKey] = string(v)
	}
	return out
}

// RecordDeviceListChange records at a new stream position, which it
// returns, that userID's devices, device keys or cross-signing keys
// changed: whoever shares a room with them must fetch their keys again.
func (tx *Tx) RecordDeviceListChange(userID string) (uint64, error) {
	pos, err := tx.btx.Bucket(bucketEvents).NextSequence()
	if err != nil {
		return 0, err
	}
	return pos, tx.btx.Bucket(bucketDeviceLists).Put(u64(pos), []byte(userID))
}

// DeviceListChanges returns the users whose device lists changed in
// (since, upto], each once.
func (tx *Tx) DeviceListChanges(since, upto uint64) []string {
	seen := map[string]bool{}
	var out []string
	c := tx.btx.Bucket(bucketDeviceLists).Cursor()
	for k, v := c.Seek(u64(since + 1)); k != nil && binary.BigEndian.Uint64(k) <= upto; k, v = c.Next() {
		if u := string(v); !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// checkKeys reports keys of devices that no longer exist: deleting a
// device must take its keys with it.
func (tx *Tx) checkKeys() []error {
	var errs []error
	devices := tx.btx.Bucket(bucketDevices)
	for _, b := range [][]byte{bucketDeviceKeys, bucketOneTimeKeys, bucketFallbackKeys} {
		_ = tx.btx.Bucket(b).ForEach(func(k, _ []byte) error {
			lp, rest, _ := bytes.Cut(k, []byte{0})
			dev, _, _ := bytes.Cut(rest, []byte{0})
			if devices.Get(deviceKey(string(lp), string(dev))) == nil {
				errs = append(errs, fmt.Errorf("%s entry %q of a missing device", b, k))
			}
			return nil
		})
	}
	return errs
}
