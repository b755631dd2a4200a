// Package storetest opens real stores in temporary directories for tests
// and checks them when the test ends.
package storetest

import (
	"testing"
	"time"

	"hearth/store"
)

// Open opens a fresh store in a temporary directory. At cleanup it is
// checked with Store.Check and closed; a problem fails the test.
func Open(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), time.Second)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { CheckAndClose(t, s) })
	return s
}

// CheckAndClose runs Store.Check on s, reports any inconsistency as a test
// error, and closes s.
func CheckAndClose(t testing.TB, s *store.Store) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close store: %v", err)
	}
}
