package store

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// maxBatch bounds how many queued writes share one transaction, so one
// commit never grows without limit under load.
const maxBatch = 512

type commitReq struct {
	fn   func(tx *Tx) error
	done chan error
}

// Update runs fn in a write transaction and returns once it is durable.
//
// Writers that queue while a commit is in flight share the next bbolt
// transaction and its fsync (group commit); a writer that finds the
// committer idle is committed at once, without the delay db.Batch imposes.
// fn may run more than once (when another fn in its batch fails, the batch
// is retried without it), so it must have no effect outside tx: move
// in-memory state only after Update returns nil.
func (s *Store) Update(fn func(tx *Tx) error) error {
	req := &commitReq{fn: fn, done: make(chan error, 1)}
	select {
	case s.commits <- req:
		return <-req.done
	case <-s.quit:
		return ErrClosed
	}
}

// commitLoop is the store's only writer. It exists so that concurrent
// writers share fsyncs; Close stops it after the queue is drained.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	for {
		var first *commitReq
		select {
		case first = <-s.commits:
		case <-s.quit:
			return
		}
		batch := []*commitReq{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.commits:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch commits batch in one transaction. A failing fn is answered
// with its own error and the rest are retried without it; bbolt has no
// savepoints, so this is how one bad write stays from spoiling the others.
func (s *Store) commitBatch(batch []*commitReq) {
	for len(batch) > 0 {
		failed, ferr := -1, error(nil)
		err := s.db.Update(func(btx *bolt.Tx) error {
			tx := &Tx{btx: btx, memos: &s.memos}
			for _, name := range appendOnly {
				btx.Bucket(name).FillPercent = 1.0 // the handle lasts the transaction
			}
			for i, r := range batch {
				if err := runGuarded(r.fn, tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, r := range batch {
				r.done <- err
			}
			return
		}
		batch[failed].done <- ferr
		batch = slices.Delete(batch, failed, failed+1)
	}
}

// runGuarded turns a panic in fn into an error, so one buggy write cannot
// take the committer, and with it every writer, down.
func runGuarded(fn func(tx *Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: panic in write: %v", p)
		}
	}()
	return fn(tx)
}
