package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Relation is one m.relates_to link from a child event to its parent, as
// the relations index keeps it: enough to aggregate and filter without
// reading the child event.
type Relation struct {
	Parent  uint64 `json:"-"` // position of the parent event
	Child   uint64 `json:"-"` // position of the child event
	RelType string `json:"-"`
	// ChildID, ChildType and Sender describe the child event.
	ChildID   string `json:"i"`
	ChildType string `json:"t"`
	Sender    string `json:"s"`
	Key       string `json:"k,omitempty"` // the annotation key of m.annotation
}

// ErrBadRelType means a rel_type cannot be indexed (it holds a NUL byte,
// which separates it from the child position in keys).
var ErrBadRelType = errors.New("store: rel_type contains a NUL byte")

func relationPrefix(parent uint64, relType string) []byte {
	k := u64(parent)
	if relType != "" {
		k = append(append(k, relType...), 0)
	}
	return k
}

// AddRelation indexes r, the relation of an event of room roomNID. A
// thread reply also moves its thread to its new place in the room's list
// of threads, which is ordered by latest reply.
func (tx *Tx) AddRelation(roomNID uint64, r *Relation) error {
	if strings.IndexByte(r.RelType, 0) >= 0 || r.RelType == "" {
		return ErrBadRelType
	}
	before, err := tx.latestChild(r.Parent, r.RelType)
	if err != nil {
		return err
	}
	if err := tx.putJSON(bucketRelations, append(relationPrefix(r.Parent, r.RelType), u64(r.Child)...), r); err != nil {
		return err
	}
	if r.RelType == RelThread {
		return tx.moveThread(roomNID, r.Parent, before, max(before, r.Child))
	}
	return nil
}

// RemoveRelation drops the relation of child to parent from the index (a
// redacted child no longer relates to anything); a thread whose last reply
// goes is no longer listed.
func (tx *Tx) RemoveRelation(roomNID, parent uint64, relType string, child uint64) error {
	if strings.IndexByte(relType, 0) >= 0 || relType == "" {
		return nil // never indexed
	}
	before, err := tx.latestChild(parent, relType)
	if err != nil {
		return err
	}
	if err := tx.btx.Bucket(bucketRelations).Delete(append(relationPrefix(parent, relType), u64(child)...)); err != nil {
		return err
	}
	if relType != RelThread {
		return nil
	}
	after, err := tx.latestChild(parent, relType)
	if err != nil {
		return err
	}
	return tx.moveThread(roomNID, parent, before, after)
}

// RelThread is the rel_type of thread replies, which the store orders
// threads by.
const RelThread = "m.thread"

// latestChild returns the position of the newest child of parent with
// relType, or 0 if it has none.
func (tx *Tx) latestChild(parent uint64, relType string) (uint64, error) {
	prefix := relationPrefix(parent, relType)
	c := tx.btx.Bucket(bucketRelations).Cursor()
	// The byte after the prefix's NUL is 0x01: seeking there lands past
	// every child of this rel_type.
	end := append(slices.Clone(prefix[:len(prefix)-1]), 1)
	k, _ := c.Seek(end)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
		return 0, nil
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
}

// moveThread moves root's entry in the room's thread list from its old
// latest reply to its new one (0: not listed).
func (tx *Tx) moveThread(roomNID, root, from, to uint64) error {
	if from == to {
		return nil
	}
	b := tx.btx.Bucket(bucketThreads)
	if from != 0 {
		if err := b.Delete(nidKey(roomNID, u64(from), u64(root))); err != nil {
			return err
		}
	}
	if to != 0 {
		return b.Put(nidKey(roomNID, u64(to), u64(root)), nil)
	}
	return nil
}

// Children returns the relations whose parent is at position parent,
// oldest child first; relType "" returns those of every rel_type.
func (tx *Tx) Children(parent uint64, relType string) ([]Relation, error) {
	if strings.IndexByte(relType, 0) >= 0 {
		return nil, nil
	}
	prefix := relationPrefix(parent, relType)
	var out []Relation
	c := tx.btx.Bucket(bucketRelations).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		typ, child, ok := bytes.Cut(k[8:], []byte{0})
		if !ok || len(child) != 8 {
			return nil, fmt.Errorf("store: malformed relation key %x", k)
		}
		var r Relation
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("store: decode relation: %w", err)
		}
		r.Parent, r.RelType, r.Child = parent, string(typ), binary.BigEndian.Uint64(child)
		out = append(out, r)
	}
	if relType == "" {
		slices.SortFunc(out, func(a, b Relation) int { return cmpU64(a.Child, b.Child) })
	}
	return out, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ThreadEntry is a thread in a room's list of threads.
type ThreadEntry struct {
	Root   uint64 // position of the thread root
	Latest uint64 // position of its latest reply
}

// Threads returns up to limit threads of a room, the most recently
// replied-to first, whose latest reply is older than before (0: no bound).
// keep, when not nil, says which threads count towards limit.
func (tx *Tx) Threads(roomNID, before uint64, limit int, keep func(ThreadEntry) (bool, error)) ([]ThreadEntry, error) {
	c := tx.btx.Bucket(bucketThreads).Cursor()
	prefix := u64(roomNID)
	var k []byte
	if before == 0 {
		before = ^uint64(0)
	}
	if k, _ = c.Seek(nidKey(roomNID, u64(before))); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var out []ThreadEntry
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Prev() {
		if len(k) != 24 {
			return nil, fmt.Errorf("store: malformed thread key %x", k)
		}
		e := ThreadEntry{Latest: binary.BigEndian.Uint64(k[8:]), Root: binary.BigEndian.Uint64(k[16:])}
		if keep != nil {
			ok, err := keep(e)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// Redact replaces the event at target with its redacted JSON and records
// that the redaction at redaction redacted it. An event redacted before
// keeps its first redaction.
func (tx *Tx) Redact(target, redaction uint64, redactedJSON []byte) error {
	b := tx.btx.Bucket(bucketRedactions)
	if b.Get(u64(target)) != nil {
		return nil
	}
	if err := tx.ReplaceEventJSON(target, redactedJSON, FlagRedacted); err != nil {
		return err
	}
	return b.Put(u64(target), u64(redaction))
}

// PutPendingRedaction records that the redaction at redaction redacts
// the event targetID, which has not been received: TakePendingRedaction
// finds it when the event arrives. The first redaction is kept.
func (tx *Tx) PutPendingRedaction(targetID string, redaction uint64) error {
	if targetID == "" {
		return fmt.Errorf("store: pending redaction of no event")
	}
	b := tx.btx.Bucket(bucketPendingRedactions)
	if b.Get([]byte(targetID)) != nil {
		return nil
	}
	return b.Put([]byte(targetID), u64(redaction))
}

// TakePendingRedaction returns and forgets the redaction waiting for the
// event eventID; ok is false when there is none.
func (tx *Tx) TakePendingRedaction(eventID string) (redaction uint64, ok bool, err error) {
	b := tx.btx.Bucket(bucketPendingRedactions)
	v := b.Get([]byte(eventID))
	if len(v) != 8 {
		return 0, false, nil
	}
	redaction = binary.BigEndian.Uint64(v)
	return redaction, true, b.Delete([]byte(eventID))
}

// RedactedBy returns the position of the redaction that redacted the event
// at pos, or ErrNotFound.
func (tx *Tx) RedactedBy(pos uint64) (uint64, error) {
	v := tx.btx.Bucket(bucketRedactions).Get(u64(pos))
	if len(v) != 8 {
		return 0, ErrNotFound
	}
	return binary.BigEndian.Uint64(v), nil
}

// PutEventTxn records the client transaction that sent the event at pos,
// for the unsigned.transaction_id its sending device is shown.
func (tx *Tx) PutEventTxn(pos uint64, k *TxnKey) error {
	v := append([]byte(k.Localpart), 0)
	v = append(append(v, k.DeviceID...), 0)
	return tx.btx.Bucket(bucketEventTxns).Put(u64(pos), append(v, k.TxnID...))
}

// EventTxn returns the client transaction that sent the event at pos, or
// ErrNotFound.
func (tx *Tx) EventTxn(pos uint64) (*TxnKey, error) {
	v := tx.btx.Bucket(bucketEventTxns).Get(u64(pos))
	if v == nil {
		return nil, ErrNotFound
	}
	parts := bytes.SplitN(v, []byte{0}, 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("store: malformed event transaction of %d", pos)
	}
	return &TxnKey{Localpart: string(parts[0]), DeviceID: string(parts[1]), TxnID: string(parts[2])}, nil
}

// checkRelations verifies the relation, thread, redaction and transaction
// indexes: every entry names existing events, a child sits in its
// parent's room, every thread is listed once under its latest reply, and
// every redacted target is flagged so.
func (tx *Tx) checkRelations() []error {
	var errs []error
	roomOf := func(pos uint64) (uint64, bool) {
		e, err := tx.Event(pos)
		if err != nil {
			return 0, false
		}
		return e.RoomNID, true
	}
	latest := map[uint64]uint64{} // thread root → latest reply
	rooms := map[uint64]uint64{}  // thread root → room
	_ = tx.btx.Bucket(bucketRelations).ForEach(func(k, v []byte) error {
		typ, child, ok := bytes.Cut(k[min(8, len(k)):], []byte{0})
		if len(k) < 8 || !ok || len(child) != 8 {
			errs = append(errs, fmt.Errorf("relation: malformed key %x", k))
			return nil
		}
		parent, c := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(child)
		pr, ok1 := roomOf(parent)
		cr, ok2 := roomOf(c)
		if !ok1 || !ok2 || pr != cr {
			errs = append(errs, fmt.Errorf("relation %d → %d: events missing or in different rooms", c, parent))
		}
		if string(typ) == RelThread {
			latest[parent], rooms[parent] = max(latest[parent], c), pr
		}
		return nil
	})
	listed := map[uint64]bool{}
	_ = tx.btx.Bucket(bucketThreads).ForEach(func(k, _ []byte) error {
		if len(k) != 24 {
			errs = append(errs, fmt.Errorf("thread: malformed key %x", k))
			return nil
		}
		nid, last, root := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:]), binary.BigEndian.Uint64(k[16:])
		if listed[root] || latest[root] != last || rooms[root] != nid {
			errs = append(errs, fmt.Errorf("thread %d listed under reply %d of room %d; its latest reply is %d", root, last, nid, latest[root]))
		}
		listed[root] = true
		return nil
	})
	for root := range latest {
		if !listed[root] {
			errs = append(errs, fmt.Errorf("thread %d is not listed", root))
		}
	}
	_ = tx.btx.Bucket(bucketRedactions).ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) != 8 {
			errs = append(errs, fmt.Errorf("redaction: malformed entry %x", k))
			return nil
		}
		target, err := tx.Event(binary.BigEndian.Uint64(k))
		if err != nil || target.Flags&FlagRedacted == 0 {
			errs = append(errs, fmt.Errorf("redaction of %x: target missing or not redacted", k))
		}
		if _, ok := roomOf(binary.BigEndian.Uint64(v)); !ok {
			errs = append(errs, fmt.Errorf("redaction of %x: redaction event missing", k))
		}
		return nil
	})
	_ = tx.btx.Bucket(bucketEventTxns).ForEach(func(k, _ []byte) error {
		if len(k) != 8 {
			errs = append(errs, fmt.Errorf("event transaction: malformed key %x", k))
		} else if _, ok := roomOf(binary.BigEndian.Uint64(k)); !ok {
			errs = append(errs, fmt.Errorf("event transaction of missing event %x", k))
		}
		return nil
	})
	return errs
}
