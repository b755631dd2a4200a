package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// BackupVersion is one version of a user's server-side key backup: how
// its keys are encrypted (algorithm, auth_data) and a summary of them.
type BackupVersion struct {
	Version   uint64          `json:"version"`
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	// Etag grows whenever the version's keys change, so a client can tell
	// another client has written to the backup.
	Etag  uint64 `json:"etag"`
	Count int    `json:"count"` // keys stored in the version
	// Deleted marks a deleted version. Its record stays so that its number
	// is never handed out again and deleting it twice succeeds.
	Deleted bool `json:"deleted,omitempty"`
}

// BackupKey is one backed-up megolm session key (the spec's KeyBackupData).
// SessionData is encrypted by the client; the server never reads it.
type BackupKey struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// RoomKey is a BackupKey with the room and session it is for.
type RoomKey struct {
	RoomID    string
	SessionID string
	Key       BackupKey
}

func backupVersionKey(localpart string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(localpart), 0), version)
}

// backupKeyPrefix is the key of a version's keys ("" roomID), a room's
// keys ("" sessionID) or one session's key. Room IDs never hold a NUL
// (callers refuse them), so a room's prefix is exact.
func backupKeyPrefix(localpart string, version uint64, roomID, sessionID string) []byte {
	k := backupVersionKey(localpart, version)
	if roomID == "" {
		return k
	}
	k = append(append(k, roomID...), 0)
	return append(k, sessionID...)
}

// CreateBackupVersion starts a new backup version, which becomes the
// user's current one, and returns it. Numbers start at 1 and are never
// reused, even after a version is deleted.
func (tx *Tx) CreateBackupVersion(localpart, algorithm string, authData json.RawMessage) (*BackupVersion, error) {
	prefix := append([]byte(localpart), 0)
	var last uint64
	c := tx.btx.Bucket(bucketBackupVersions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) == len(prefix)+8 {
			last = max(last, binary.BigEndian.Uint64(k[len(prefix):]))
		}
	}
	v := &BackupVersion{Version: last + 1, Algorithm: algorithm, AuthData: authData}
	return v, tx.putJSON(bucketBackupVersions, backupVersionKey(localpart, v.Version), v)
}

// BackupVersion returns a live backup version, or ErrNotFound for one
// that never existed or was deleted.
func (tx *Tx) BackupVersion(localpart string, version uint64) (*BackupVersion, error) {
	var v BackupVersion
	if err := tx.getJSON(bucketBackupVersions, backupVersionKey(localpart, version), &v); err != nil {
		return nil, err
	}
	if v.Deleted {
		return nil, ErrNotFound
	}
	return &v, nil
}

// CurrentBackupVersion returns the user's newest live backup version, or
// ErrNotFound when they have none. Deleting the current version makes
// the newest older live one current again (as Synapse does).
func (tx *Tx) CurrentBackupVersion(localpart string) (*BackupVersion, error) {
	prefix := append([]byte(localpart), 0)
	var cur *BackupVersion
	c := tx.btx.Bucket(bucketBackupVersions).Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		var v BackupVersion
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("store: decode backup version: %w", err)
		}
		if !v.Deleted {
			cur = &v // keys ascend by version, so the last live one wins
		}
	}
	if cur == nil {
		return nil, ErrNotFound
	}
	return cur, nil
}

// UpdateBackupAuthData replaces a live version's auth_data; its algorithm
// and keys stay.
func (tx *Tx) UpdateBackupAuthData(localpart string, version uint64, authData json.RawMessage) error {
	v, err := tx.BackupVersion(localpart, version)
	if err != nil {
		return err
	}
	v.AuthData = authData
	return tx.putJSON(bucketBackupVersions, backupVersionKey(localpart, version), v)
}

// DeleteBackupVersion deletes a version and every key in it. Deleting a
// deleted version succeeds; one that never existed is ErrNotFound.
func (tx *Tx) DeleteBackupVersion(localpart string, version uint64) error {
	var v BackupVersion
	if err := tx.getJSON(bucketBackupVersions, backupVersionKey(localpart, version), &v); err != nil {
		return err
	}
	if v.Deleted {
		return nil
	}
	if _, err := tx.deleteBackupKeys(localpart, version, "", ""); err != nil {
		return err
	}
	v = BackupVersion{Version: version, Algorithm: v.Algorithm, AuthData: json.RawMessage("{}"), Etag: v.Etag + 1, Deleted: true}
	return tx.putJSON(bucketBackupVersions, backupVersionKey(localpart, version), &v)
}

// PutBackupKeys stores keys in a live version. Where the version already
// holds a key for a session, replace(stored, uploaded) decides whether
// the upload takes its place. It returns the version as it now stands; its etag
// grows only if a key changed.
func (tx *Tx) PutBackupKeys(localpart string, version uint64, keys []RoomKey, replace func(stored, uploaded *BackupKey) bool) (*BackupVersion, error) {
	v, err := tx.BackupVersion(localpart, version)
	if err != nil {
		return nil, err
	}
	b := tx.btx.Bucket(bucketBackupKeys)
	changed := false
	for i := range keys {
		k := &keys[i]
		if k.RoomID == "" || k.SessionID == "" || bytes.IndexByte([]byte(k.RoomID), 0) >= 0 {
			return nil, fmt.Errorf("store: backup key for room %q session %q: bad IDs", k.RoomID, k.SessionID)
		}
		key := backupKeyPrefix(localpart, version, k.RoomID, k.SessionID)
		if raw := b.Get(key); raw != nil {
			var old BackupKey
			if err := json.Unmarshal(raw, &old); err != nil {
				return nil, fmt.Errorf("store: decode backup key: %w", err)
			}
			if !replace(&old, &k.Key) {
				continue
			}
		} else {
			v.Count++
		}
		if err := tx.putJSON(bucketBackupKeys, key, &k.Key); err != nil {
			return nil, err
		}
		changed = true
	}
	if !changed {
		return v, nil
	}
	v.Etag++
	return v, tx.putJSON(bucketBackupVersions, backupVersionKey(localpart, version), v)
}

// BackupKeys returns the keys of a live version in room and session
// order: all of them (roomID ""), a room's (sessionID ""), or one
// session's (none if it is not backed up).
func (tx *Tx) BackupKeys(localpart string, version uint64, roomID, sessionID string) ([]RoomKey, error) {
	if _, err := tx.BackupVersion(localpart, version); err != nil {
		return nil, err
	}
	var out []RoomKey
	err := tx.scanBackupKeys(localpart, version, roomID, sessionID, func(k []byte, rk RoomKey, raw []byte) error {
		if err := json.Unmarshal(raw, &rk.Key); err != nil {
			return fmt.Errorf("store: decode backup key: %w", err)
		}
		out = append(out, rk)
		return nil
	})
	return out, err
}

// DeleteBackupKeys deletes keys of a live version, chosen as BackupKeys
// chooses them, and returns the version as it now stands; its etag grows
// only if a key was deleted.
func (tx *Tx) DeleteBackupKeys(localpart string, version uint64, roomID, sessionID string) (*BackupVersion, error) {
	v, err := tx.BackupVersion(localpart, version)
	if err != nil {
		return nil, err
	}
	n, err := tx.deleteBackupKeys(localpart, version, roomID, sessionID)
	if err != nil || n == 0 {
		return v, err
	}
	v.Count -= n
	v.Etag++
	return v, tx.putJSON(bucketBackupVersions, backupVersionKey(localpart, version), v)
}

func (tx *Tx) deleteBackupKeys(localpart string, version uint64, roomID, sessionID string) (int, error) {
	var doomed [][]byte
	err := tx.scanBackupKeys(localpart, version, roomID, sessionID, func(k []byte, _ RoomKey, _ []byte) error {
		doomed = append(doomed, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return 0, err
	}
	b := tx.btx.Bucket(bucketBackupKeys)
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// scanBackupKeys calls fn for each stored key BackupKeys would choose,
// with the room and session decoded from the bucket key.
func (tx *Tx) scanBackupKeys(localpart string, version uint64, roomID, sessionID string, fn func(k []byte, rk RoomKey, raw []byte) error) error {
	base := backupVersionKey(localpart, version)
	b := tx.btx.Bucket(bucketBackupKeys)
	if sessionID != "" {
		k := backupKeyPrefix(localpart, version, roomID, sessionID)
		if raw := b.Get(k); raw != nil {
			return fn(k, RoomKey{RoomID: roomID, SessionID: sessionID}, raw)
		}
		return nil
	}
	prefix := backupKeyPrefix(localpart, version, roomID, "")
	c := b.Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		room, session, ok := bytes.Cut(k[len(base):], []byte{0})
		if !ok {
			return fmt.Errorf("store: backup key %q has no session", k)
		}
		if err := fn(k, RoomKey{RoomID: string(room), SessionID: string(session)}, raw); err != nil {
			return err
		}
	}
	return nil
}

// checkBackups reports backed-up keys of versions that are missing or
// deleted, and versions whose count disagrees with their keys.
func (tx *Tx) checkBackups() []error {
	var errs []error
	counts := map[string]int{} // by version key
	_ = tx.btx.Bucket(bucketBackupKeys).ForEach(func(k, _ []byte) error {
		lp, rest, ok := bytes.Cut(k, []byte{0})
		if !ok || len(rest) < 8 {
			errs = append(errs, fmt.Errorf("backup key %q: malformed", k))
			return nil
		}
		counts[string(backupVersionKey(string(lp), binary.BigEndian.Uint64(rest)))]++
		return nil
	})
	_ = tx.btx.Bucket(bucketBackupVersions).ForEach(func(k, raw []byte) error {
		var v BackupVersion
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fmt.Errorf("backup version %q: %w", k, err))
			return nil
		}
		if n := counts[string(k)]; n != v.Count || (v.Deleted && n != 0) {
			errs = append(errs, fmt.Errorf("backup version %q: count %d, deleted %v, but %d keys stored", k, v.Count, v.Deleted, n))
		}
		delete(counts, string(k))
		return nil
	})
	for k, n := range counts {
		errs = append(errs, fmt.Errorf("%d backup keys of missing version %q", n, k))
	}
	return errs
}
