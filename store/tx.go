package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Tx is a store transaction. It exists only inside View or Update and must
// not escape the function it was given to.
type Tx struct {
	btx   *bolt.Tx
	memos *memos // the store's
}

// Writable reports whether tx is a write transaction, whose changes a
// failed commit may still undo.
func (tx *Tx) Writable() bool { return tx.btx.Writable() }

func (tx *Tx) getJSON(bucket, key []byte, v any) error {
	raw := tx.btx.Bucket(bucket).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("store: decode %s/%q: %w", bucket, key, err)
	}
	return nil
}

func (tx *Tx) putJSON(bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%q: %w", bucket, key, err)
	}
	return tx.btx.Bucket(bucket).Put(key, raw)
}

// ServerName returns the server name recorded on first start, or "" if
// none is recorded yet.
func (tx *Tx) ServerName() string {
	return string(tx.btx.Bucket(bucketMeta).Get([]byte(metaServerName)))
}

// SetServerName records the server name the data belongs to.
func (tx *Tx) SetServerName(name string) error {
	return tx.btx.Bucket(bucketMeta).Put([]byte(metaServerName), []byte(name))
}

// SigningKey is the server's ed25519 signing key.
type SigningKey struct {
	ID   string `json:"id"`   // "ed25519:" + version
	Seed []byte `json:"seed"` // ed25519 private key seed, 32 bytes
}

// SigningKey returns the server's signing key, or ErrNotFound.
func (tx *Tx) SigningKey() (*SigningKey, error) {
	var k SigningKey
	if err := tx.getJSON(bucketMeta, []byte(metaSigningKey), &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// PutSigningKey stores the server's signing key.
func (tx *Tx) PutSigningKey(k *SigningKey) error {
	return tx.putJSON(bucketMeta, []byte(metaSigningKey), k)
}
