package store

import "errors"

// Sentinel errors of the store. Callers compare with errors.Is.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means a record that must be new already exists.
	ErrExists = errors.New("store: already exists")
	// ErrLocked means another process holds the database file open.
	ErrLocked = errors.New("store: database is in use by another process (is hearth serve running?)")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNewerSchema means the file was written by a newer Hearth.
	ErrNewerSchema = errors.New("store: database was written by a newer version of Hearth")
)
