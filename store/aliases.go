package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Alias is a local room alias: the room it points to and who made it
// (who may always delete it again).
type Alias struct {
	Alias   string `json:"alias"`
	RoomID  string `json:"room_id"`
	Creator string `json:"creator"`
}

func roomAliasKey(nid uint64, alias string) []byte {
	return append(u64(nid), alias...)
}

// PutAlias maps a new alias to its room: ErrExists if the alias is taken,
// ErrNotFound if the room is unknown.
func (tx *Tx) PutAlias(a *Alias) error {
	if tx.btx.Bucket(bucketAliases).Get([]byte(a.Alias)) != nil {
		return ErrExists
	}
	room, err := tx.RoomByID(a.RoomID)
	if err != nil {
		return err
	}
	if err := tx.putJSON(bucketAliases, []byte(a.Alias), a); err != nil {
		return err
	}
	return tx.btx.Bucket(bucketRoomAliases).Put(roomAliasKey(room.NID, a.Alias), nil)
}

// AliasByName returns a local alias, or ErrNotFound.
func (tx *Tx) AliasByName(alias string) (*Alias, error) {
	var a Alias
	if err := tx.getJSON(bucketAliases, []byte(alias), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteAlias removes a local alias and returns what it was, or
// ErrNotFound.
func (tx *Tx) DeleteAlias(alias string) (*Alias, error) {
	a, err := tx.AliasByName(alias)
	if err != nil {
		return nil, err
	}
	room, err := tx.RoomByID(a.RoomID)
	if err != nil {
		return nil, fmt.Errorf("store: alias %s of unknown room %s: %w", alias, a.RoomID, err)
	}
	if err := tx.btx.Bucket(bucketRoomAliases).Delete(roomAliasKey(room.NID, alias)); err != nil {
		return nil, err
	}
	return a, tx.btx.Bucket(bucketAliases).Delete([]byte(alias))
}

// RoomAliases returns the local aliases of a room, sorted.
func (tx *Tx) RoomAliases(roomNID uint64) ([]string, error) {
	prefix := u64(roomNID)
	out := []string{}
	c := tx.btx.Bucket(bucketRoomAliases).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[8:]))
	}
	return out, nil
}

// MoveAliases points every local alias of one room at another (a room
// upgrade hands its aliases to the replacement).
func (tx *Tx) MoveAliases(from, to *Room) error {
	names, err := tx.RoomAliases(from.NID)
	if err != nil {
		return err
	}
	idx := tx.btx.Bucket(bucketRoomAliases)
	for _, name := range names {
		a, err := tx.AliasByName(name)
		if err != nil {
			return fmt.Errorf("store: alias %s indexed but missing: %w", name, err)
		}
		a.RoomID = to.RoomID
		if err := tx.putJSON(bucketAliases, []byte(name), a); err != nil {
			return err
		}
		if err := idx.Delete(roomAliasKey(from.NID, name)); err != nil {
			return err
		}
		if err := idx.Put(roomAliasKey(to.NID, name), nil); err != nil {
			return err
		}
	}
	return nil
}

// SetPublished lists a room in the public room directory, or takes it
// off.
func (tx *Tx) SetPublished(roomNID uint64, published bool) error {
	b := tx.btx.Bucket(bucketPublished)
	if published {
		return b.Put(u64(roomNID), nil)
	}
	return b.Delete(u64(roomNID))
}

// IsPublished reports whether a room is in the public room directory.
func (tx *Tx) IsPublished(roomNID uint64) bool {
	k, _ := tx.btx.Bucket(bucketPublished).Cursor().Seek(u64(roomNID))
	return k != nil && binary.BigEndian.Uint64(k) == roomNID
}

// PublishedRooms returns the NIDs of the rooms in the public room
// directory.
func (tx *Tx) PublishedRooms() ([]uint64, error) {
	var out []uint64
	err := tx.btx.Bucket(bucketPublished).ForEach(func(k, _ []byte) error {
		if len(k) != 8 {
			return errors.New("store: malformed published room key")
		}
		out = append(out, binary.BigEndian.Uint64(k))
		return nil
	})
	return out, err
}

// checkDirectory verifies that every alias points to a known room and is
// indexed under it, that the index holds nothing else, and that every
// published room exists.
func (tx *Tx) checkDirectory() []error {
	var errs []error
	indexed := map[string]bool{}
	_ = tx.btx.Bucket(bucketRoomAliases).ForEach(func(k, _ []byte) error {
		if len(k) < 8 {
			errs = append(errs, fmt.Errorf("room alias index: short key %q", k))
			return nil
		}
		indexed[string(k)] = true
		return nil
	})
	_ = tx.btx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
		var a Alias
		if err := json.Unmarshal(v, &a); err != nil {
			errs = append(errs, fmt.Errorf("alias %q: %w", k, err))
			return nil
		}
		room, err := tx.RoomByID(a.RoomID)
		if err != nil {
			errs = append(errs, fmt.Errorf("alias %q points to unknown room %s", k, a.RoomID))
			return nil
		}
		key := string(roomAliasKey(room.NID, string(k)))
		if !indexed[key] {
			errs = append(errs, fmt.Errorf("alias %q is not indexed under its room", k))
		}
		delete(indexed, key)
		return nil
	})
	for k := range indexed {
		errs = append(errs, fmt.Errorf("room alias index entry %q without its alias", k[8:]))
	}
	nids, err := tx.PublishedRooms()
	if err != nil {
		errs = append(errs, err)
	}
	for _, nid := range nids {
		if _, err := tx.RoomByNID(nid); err != nil {
			errs = append(errs, fmt.Errorf("published room %d: %w", nid, err))
		}
	}
	return errs
}
