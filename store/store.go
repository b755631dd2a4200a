// Package store keeps everything Hearth must not lose in one bbolt file.
//
// The API is shaped by domain operations (users, devices, sessions) on a Tx,
// never by raw buckets, so that a second backend can stand behind it later.
// Writes go through Update, which group-commits concurrent writers into one
// bbolt transaction and one fsync without making a lone writer wait.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the database file's name inside the data directory.
const FileName = "hearth.db"

// Store is an open Hearth database. It is safe for concurrent use.
type Store struct {
	db      *bolt.DB
	commits chan *commitReq // unbuffered: a send succeeds only while commitLoop runs
	quit    chan struct{}   // closed by Close to stop commitLoop
	stopped chan struct{}   // closed when commitLoop has returned
	memos   memos           // decoded records by their stored bytes
}

// Open opens (creating if needed) the database in dir and brings its schema
// up to date. It fails with ErrLocked within lockTimeout when another
// process has the file open.
func Open(dir string, lockTimeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{
		Timeout:        lockTimeout,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := db.Update(migrate); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{
		db:      db,
		commits: make(chan *commitReq),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go s.commitLoop() // the single writer; stopped by Close
	return s, nil
}

// Close waits for queued writes, then closes the file. Updates after Close
// fail with ErrClosed.
func (s *Store) Close() error {
	select {
	case <-s.quit:
		return nil
	default:
	}
	close(s.quit)
	<-s.stopped
	return s.db.Close()
}

// View runs fn in a read-only transaction. The Tx must not escape fn.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{btx: btx, memos: &s.memos}) })
}

// migrations[i] brings a database at schema version i to version i+1.
// Append only; never edit a step that has shipped.
var migrations = []func(tx *bolt.Tx) error{
	// 0 → 1: accounts.
	createBuckets,
	// 1 → 2: rooms and events.
	createBuckets,
	// 2 → 3: reports.
	createBuckets,
	// 3 → 4: room aliases and the public room directory.
	createBuckets,
	// 4 → 5: relations, threads, redactions, event transaction IDs.
	createBuckets,
	// 5 → 6: sync filters.
	createBuckets,
	// 6 → 7: account data.
	createBuckets,
	// 7 → 8: receipts.
	createBuckets,
	// 8 → 9: to-device messages.
	createBuckets,
	// 9 → 10: server-side key backups.
	createBuckets,
	// 10 → 11: end-to-end encryption keys and device-list changes.
	createBuckets,
	// 11 → 12: the media repository.
	createBuckets,
	// 12 → 13: the outbound federation queue.
	createBuckets,
	// 13 → 14: inbound federation transactions.
	createBuckets,
	// 14 → 15: OpenID tokens.
	createBuckets,
	// 15 → 16: device lists across servers, inbound to-device dedupe.
	createBuckets,
	// 16 → 17: timeline gaps and backfill points.
	createBuckets,
	// 17 → 18: redactions of events not received yet.
	createBuckets,
}

// createBuckets creates every bucket of the current schema that is missing.
func createBuckets(tx *bolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion is the schema version this binary writes.
var SchemaVersion = uint64(len(migrations))

func migrate(tx *bolt.Tx) error {
	var have uint64
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get([]byte(metaSchemaVersion)); len(v) == 8 {
			have = binary.BigEndian.Uint64(v)
		}
	}
	if have > SchemaVersion {
		return fmt.Errorf("%w (schema %d, this binary knows %d)", ErrNewerSchema, have, SchemaVersion)
	}
	for v := have; v < SchemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	return tx.Bucket(bucketMeta).Put([]byte(metaSchemaVersion), binary.BigEndian.AppendUint64(nil, SchemaVersion))
}
