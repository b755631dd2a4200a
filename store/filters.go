package store

import (
	"strconv"
)

func filterKey(localpart, id string) []byte {
	return append(append([]byte(localpart), 0), id...)
}

// AddFilter stores a user's filter JSON and returns its new ID.
func (tx *Tx) AddFilter(localpart string, js []byte) (string, error) {
	b := tx.btx.Bucket(bucketFilters)
	n, err := b.NextSequence()
	if err != nil {
		return "", err
	}
	id := strconv.FormatUint(n, 10)
	return id, b.Put(filterKey(localpart, id), js)
}

// Filter returns a user's filter JSON, or ErrNotFound.
func (tx *Tx) Filter(localpart, id string) ([]byte, error) {
	v := tx.btx.Bucket(bucketFilters).Get(filterKey(localpart, id))
	if v == nil {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}
