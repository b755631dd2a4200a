package rooms

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"hearth/server/pdu"
	"hearth/store"
)

// Bounds of the parsed events the room writers keep: a busy room's
// create, power levels, join rules, senders' member events and newest
// event, for a few hundred busy rooms. A parsed event keeps about as much
// again as its JSON, so the cache stays under about 8 MB however large the
// events.
const (
	headCacheEvents    = 2048
	headCacheJSONBytes = 4 << 20
)

// headCache keeps the parsed events room writers read again and again:
// each send needs its room's newest event (its prev event) and a handful
// of current state events (its auth events), and parsing one costs far
// more than the send's own bbolt work, as the event ID of a room version
// 3+ event is a hash of its redacted canonical JSON.
//
// An entry is used only while the stored record is byte for byte the one
// it was parsed from, so a redaction (which rewrites the record) or any
// other rewrite can never be served stale. Its events have their IDs
// computed before they are shared: pdu.Event is otherwise immutable, so
// readers on any goroutine may use them.
type headCache struct {
	mu sync.Mutex // guards cur, old, curBytes
	// Two generations approximate LRU at O(1): lookups promote to cur,
	// and when cur fills, old is dropped and cur becomes old.
	cur, old map[uint64]*headEntry
	curBytes int // JSON bytes of the events in cur
}

type headEntry struct {
	version string
	flags   uint8
	json    []byte // the stored JSON the event was parsed from
	ev      *pdu.Event
}

func newHeadCache() *headCache {
	return &headCache{cur: map[uint64]*headEntry{}, old: map[uint64]*headEntry{}}
}

// event returns the parsed event at pos, from the cache when the stored
// record is unchanged, else parsed from tx and cached.
func (c *headCache) event(tx *store.Tx, version string, pos uint64) (*pdu.Event, error) {
	flags, id, raw, err := tx.EventRaw(pos)
	if err != nil {
		return nil, fmt.Errorf("event at %d: %w", pos, err)
	}
	c.mu.Lock()
	e := c.cur[pos]
	if e == nil {
		e = c.old[pos]
	}
	c.mu.Unlock()
	if e != nil && e.version == version && e.flags == flags && bytes.Equal(e.json, raw) {
		c.put(pos, e)
		return e.ev, nil
	}
	js := slices.Clone(raw) // raw is bbolt's, valid only in tx
	ev, err := pdu.ParseStored(version, js, flags&store.FlagRedacted != 0, id)
	if err != nil {
		return nil, err
	}
	c.add(pos, version, flags, js, ev)
	return ev, nil
}

// add caches ev, stored at pos as js with flags.
func (c *headCache) add(pos uint64, version string, flags uint8, js []byte, ev *pdu.Event) {
	ev.ID() // computed once, here, so that sharing ev never races on it
	c.put(pos, &headEntry{version: version, flags: flags, json: js, ev: ev})
}

func (c *headCache) put(pos uint64, e *headEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur[pos] == e {
		return
	}
	if len(c.cur) >= headCacheEvents/2 || c.curBytes+len(e.json) > headCacheJSONBytes/2 {
		c.old, c.cur, c.curBytes = c.cur, map[uint64]*headEntry{}, 0
	}
	if prev := c.cur[pos]; prev != nil {
		c.curBytes -= len(prev.json)
	}
	c.cur[pos] = e
	c.curBytes += len(e.json)
}
