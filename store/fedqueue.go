package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Kinds of FedQueued entries.
const (
	FedPDU = "pdu"
	FedEDU = "edu"
)

// FedQueued is a PDU or EDU waiting to be sent to one destination.
type FedQueued struct {
	// Seq is the entry's place in the queue, assigned when it is queued.
	Seq  uint64          `json:"-"`
	Kind string          `json:"kind"` // FedPDU or FedEDU
	JSON json.RawMessage `json:"json"`
}

func fedQueuePrefix(destination string) []byte {
	return append([]byte(destination), 0)
}

// QueueFederation appends items, in order, to destination's queue; their
// Seq fields are set. Every destination shares one sequence, so entries
// queued by one call stay in order everywhere.
func (tx *Tx) QueueFederation(destination string, items []FedQueued) error {
	b := tx.btx.Bucket(bucketFedQueue)
	prefix := fedQueuePrefix(destination)
	for i := range items {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		items[i].Seq = seq
		if err := tx.putJSON(bucketFedQueue, append(prefix, u64(seq)...), &items[i]); err != nil {
			return err
		}
	}
	return nil
}

// FederationBatch returns the next transaction for destination: the
// entries of the one already in flight if there is one, otherwise the
// oldest entries up to (not past) the first that would exceed maxPDUs or
// maxEDUs, which it records as in flight. Recording it is what keeps a
// retried transaction, even after a restart, the same entries under the
// same txnId, though more were queued since. An empty queue returns nil.
func (tx *Tx) FederationBatch(destination string, maxPDUs, maxEDUs int) ([]FedQueued, error) {
	var last uint64
	if v := tx.btx.Bucket(bucketFedInFlight).Get([]byte(destination)); len(v) == 8 {
		last = binary.BigEndian.Uint64(v)
	}
	prefix := fedQueuePrefix(destination)
	var out []FedQueued
	pdus, edus := 0, 0
	c := tx.btx.Bucket(bucketFedQueue).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k[len(prefix):])
		if last != 0 && seq > last {
			break
		}
		var e FedQueued
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("store: decode federation queue entry: %w", err)
		}
		if last == 0 {
			if e.Kind == FedPDU && pdus == maxPDUs || e.Kind != FedPDU && edus == maxEDUs {
				break
			}
		}
		if e.Kind == FedPDU {
			pdus++
		} else {
			edus++
		}
		e.Seq = seq
		out = append(out, e)
	}
	if len(out) == 0 {
		if err := tx.btx.Bucket(bucketFedInFlight).Delete([]byte(destination)); err != nil || last == 0 {
			return nil, err
		}
		// An in-flight record whose entries are gone: form a new batch.
		return tx.FederationBatch(destination, maxPDUs, maxEDUs)
	}
	if last == 0 {
		return out, tx.btx.Bucket(bucketFedInFlight).Put([]byte(destination), u64(out[len(out)-1].Seq))
	}
	return out, nil
}

// AckFederationBatch deletes destination's entries up to and including
// last, and its in-flight transaction: the destination accepted them.
func (tx *Tx) AckFederationBatch(destination string, last uint64) error {
	prefix := fedQueuePrefix(destination)
	b := tx.btx.Bucket(bucketFedQueue)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Seek(prefix) {
		if binary.BigEndian.Uint64(k[len(prefix):]) > last {
			break
		}
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return tx.btx.Bucket(bucketFedInFlight).Delete([]byte(destination))
}

// FederationDestinations returns the destinations with queued entries.
func (tx *Tx) FederationDestinations() []string {
	var out []string
	c := tx.btx.Bucket(bucketFedQueue).Cursor()
	for k, _ := c.First(); k != nil; {
		dest, _, ok := bytes.Cut(k, []byte{0})
		if !ok {
			k, _ = c.Next()
			continue
		}
		out = append(out, string(dest))
		// Skip the rest of this destination: 0x01 sorts after every
		// "dest 0x00 ..." key.
		k, _ = c.Seek(append(append([]byte{}, dest...), 1))
	}
	return out
}

func fedTxnKey(origin, txnID string) []byte {
	return append(append([]byte(origin), 0), txnID...)
}

// FederationTxn returns the response recorded for a transaction origin
// sent us, or ErrNotFound if it was never processed.
func (tx *Tx) FederationTxn(origin, txnID string) ([]byte, error) {
	v := tx.btx.Bucket(bucketFedTxns).Get(fedTxnKey(origin, txnID))
	if len(v) < 8 {
		return nil, ErrNotFound
	}
	return slices.Clone(v[8:]), nil
}

// PutFederationTxn records the response to a transaction origin sent us
// at now (Unix milliseconds).
func (tx *Tx) PutFederationTxn(origin, txnID string, now int64, response []byte) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(response)), uint64(now))
	return tx.btx.Bucket(bucketFedTxns).Put(fedTxnKey(origin, txnID), append(v, response...))
}

// PruneFederationTxns forgets the transactions recorded before (Unix
// milliseconds): a peer retries a transaction for minutes, not days.
func (tx *Tx) PruneFederationTxns(before int64) (int, error) {
	return pruneOlder(tx.btx.Bucket(bucketFedTxns), before)
}

// pruneOlder deletes the entries of b whose value starts with a time
// (8 bytes, Unix milliseconds) before before, and those too short to
// hold one.
func pruneOlder(b *bolt.Bucket, before int64) (int, error) {
	var old [][]byte
	_ = b.ForEach(func(k, v []byte) error {
		if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) < before {
			old = append(old, slices.Clone(k))
		}
		return nil
	})
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}
