package store

import (
	"fmt"
)

// A state snapshot is a parent snapshot plus the entries that differ from
// it, so long-lived rooms do not copy their whole state per state event.
// Every snapshotFlattenDepth levels a snapshot is stored whole, which
// bounds the walk that StateAt does.
const snapshotFlattenDepth = 32

type snapshot struct {
	Parent  uint64         `json:"p,omitempty"` // 0: none
	Level   int            `json:"l"`           // distance to a whole snapshot
	Entries []snapshotItem `json:"e"`
	// A snapshot stored whole for being snapshotFlattenDepth deltas deep
	// keeps the snapshot it was derived from and the changes made to it,
	// so StateChanges can still walk through it.
	Base    uint64         `json:"b,omitempty"`
	Changes []snapshotItem `json:"c,omitempty"`
}

// snapshotItem is [type, state key, position]; position 0 removes the
// key from the parent's state.
type snapshotItem struct {
	Type string `json:"t"`
	Key  string `json:"k"`
	Pos  uint64 `json:"p"`
}

// addSnapshot stores a new snapshot: parent (0 for the empty state) with
// changes applied. It returns the new snapshot's ID.
func (tx *Tx) addSnapshot(parent uint64, changes map[StateKey]uint64) (uint64, error) {
	snaps := tx.btx.Bucket(bucketSnapshots)
	id, err := snaps.NextSequence()
	if err != nil {
		return 0, err
	}
	s := snapshot{Parent: parent}
	if parent != 0 {
		var p snapshot
		if err := tx.getJSON(bucketSnapshots, u64(parent), &p); err != nil {
			return 0, fmt.Errorf("store: parent snapshot %d: %w", parent, err)
		}
		s.Level = p.Level + 1
	}
	if s.Level >= snapshotFlattenDepth {
		whole, err := tx.StateAt(parent)
		if err != nil {
			return 0, err
		}
		for k, v := range changes {
			if v == 0 {
				delete(whole, k)
			} else {
				whole[k] = v
			}
		}
		for k, v := range changes {
			s.Changes = append(s.Changes, snapshotItem{k.Type, k.Key, v})
		}
		changes, s.Base, s.Parent, s.Level = whole, parent, 0, 0
	}
	for k, v := range changes {
		s.Entries = append(s.Entries, snapshotItem{k.Type, k.Key, v})
	}
	return id, tx.putJSON(bucketSnapshots, u64(id), &s)
}

// StateAt returns the whole state of a snapshot (0 is the empty state).
func (tx *Tx) StateAt(snapID uint64) (map[StateKey]uint64, error) {
	out := map[StateKey]uint64{}
	for id := snapID; id != 0; {
		var s snapshot
		if err := tx.getJSON(bucketSnapshots, u64(id), &s); err != nil {
			return nil, fmt.Errorf("store: snapshot %d: %w", id, err)
		}
		for _, e := range s.Entries {
			k := StateKey{e.Type, e.Key}
			if _, newer := out[k]; !newer {
				out[k] = e.Pos
			}
		}
		id = s.Parent
	}
	for k, pos := range out {
		if pos == 0 {
			delete(out, k)
		}
	}
	return out, nil
}

// StateChanges returns the entries by which snapshot to differs from
// from (position 0: the key was removed), when from is one of to's
// ancestors at most maxSteps deltas away; ok is false otherwise (a whole
// snapshot, another branch, or too far), and the caller must read the
// whole state instead. It lets a per-snapshot cache follow a room's state
// one event at a time without reading all of it.
func (tx *Tx) StateChanges(from, to uint64, maxSteps int) (changes map[StateKey]uint64, ok bool, err error) {
	changes = map[StateKey]uint64{}
	for id, steps := to, 0; id != from; steps++ {
		if id == 0 || steps == maxSteps {
			return nil, false, nil
		}
		var s snapshot
		if err := tx.getJSON(bucketSnapshots, u64(id), &s); err != nil {
			return nil, false, fmt.Errorf("store: snapshot %d: %w", id, err)
		}
		delta, parent := s.Entries, s.Parent
		if parent == 0 {
			if s.Base == 0 {
				return nil, false, nil // stored whole from scratch
			}
			delta, parent = s.Changes, s.Base
		}
		for _, e := range delta {
			k := StateKey{e.Type, e.Key}
			if _, newer := changes[k]; !newer {
				changes[k] = e.Pos
			}
		}
		id = parent
	}
	return changes, true, nil
}

// NewSnapshot stores a snapshot of state, as a delta from near (a
// snapshot it probably shares most entries with; 0 for none), and
// returns its ID; near itself if state is exactly its state.
func (tx *Tx) NewSnapshot(state map[StateKey]uint64, near uint64) (uint64, error) {
	base, err := tx.StateAt(near)
	if err != nil {
		return 0, err
	}
	changes := map[StateKey]uint64{}
	for k, pos := range state {
		if base[k] != pos {
			changes[k] = pos
		}
	}
	for k := range base {
		if _, ok := state[k]; !ok {
			changes[k] = 0
		}
	}
	if len(changes) == 0 {
		return near, nil
	}
	if near != 0 && len(changes) > len(state)/2 {
		near, changes = 0, state // mostly different: store it whole
	}
	return tx.addSnapshot(near, changes)
}

// StateAfter returns the state after an event: the state before it, plus
// the event itself if it is a state event of the given key.
func (tx *Tx) StateAfter(ev *StoredEvent, sk *StateKey) (map[StateKey]uint64, error) {
	st, err := tx.StateAt(ev.StateBefore)
	if err != nil {
		return nil, err
	}
	if sk != nil {
		st[*sk] = ev.Pos
	}
	return st, nil
}
