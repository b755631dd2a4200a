package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// memoEntries bounds each memo; a full memo starts again empty. The
// records memoised (rooms, sessions, users, devices) are a few hundred
// bytes, so a memo stays under a few MB.
const memoEntries = 4096

// memo keeps records decoded, by key, with the stored bytes they were
// decoded from. The records are still read from bbolt in every
// transaction; a memo only spares decoding them again (encoding/json is
// most of what reading a small record costs), and an entry is used only
// while the stored bytes are unchanged, so it can never be stale however
// the record was written, and rolled-back writes never match.
type memo[T any] struct {
	mu sync.Mutex // guards m
	m  map[string]memoEntry[T]
}

type memoEntry[T any] struct {
	raw []byte
	v   T
}

// decode returns raw, the stored record at key, decoded into a T.
func (m *memo[T]) decode(key, raw []byte) (T, error) {
	m.mu.Lock()
	e, ok := m.m[string(key)]
	m.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.v, nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, err
	}
	m.remember(key, slices.Clone(raw), v) // raw is bbolt's, valid only in its transaction
	return v, nil
}

// remember records that raw, which the memo now owns, decodes to v.
func (m *memo[T]) remember(key, raw []byte, v T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m) >= memoEntries {
		m.m = make(map[string]memoEntry[T])
	}
	m.m[string(key)] = memoEntry[T]{raw: raw, v: v}
}

// getMemo reads the record at key of bucket through m; ErrNotFound when
// there is none. The T it returns shares slices with the memo: callers
// copy any they change.
func getMemo[T any](tx *Tx, m *memo[T], bucket, key []byte) (T, error) {
	raw := tx.btx.Bucket(bucket).Get(key)
	if raw == nil {
		var zero T
		return zero, ErrNotFound
	}
	v, err := m.decode(key, raw)
	if err != nil {
		return v, fmt.Errorf("store: decode %s/%q: %w", bucket, key, err)
	}
	return v, nil
}

// memos are the store's decoding memos, one per kind of record read on
// every request or every send.
type memos struct {
	rooms    memo[Room]
	sessions memo[Session]
	users    memo[User]
	devices  memo[Device]
}
