package rooms

import (
	"encoding/json"

	"hearth/store"
)

// reader decides, event by event, what one user may see of one room, by
// the spec's "History visibility" algorithm, with the room state before
// each event:
//  1. history_visibility world_readable: visible;
//  2. the user was joined: visible;
//  3. shared, and the user joined at some point after the event: visible;
//  4. invited, and the user was invited: visible;
//  5. otherwise hidden.
//
// A user's own member event counts with its new membership, so they see
// their own join and leave.
type reader struct {
	tx      *store.Tx
	room    *store.Room
	userID  string
	current *store.Membership // the user's latest membership; nil if none
	// joinedLate is the position up to which rule 3 holds: the user is
	// joined now (no limit), or left after having been joined.
	joinedLate uint64
	snaps      map[uint64]snapView // by state snapshot ID
}

type snapView struct {
	visibility string
	membership string
}

const noLimit = ^uint64(0)

func newReader(tx *store.Tx, room *store.Room, userID string, current *store.Membership) (*reader, error) {
	rd := &reader{tx: tx, room: room, userID: userID, current: current, snaps: map[uint64]snapView{}}
	if current == nil {
		return rd, nil
	}
	switch current.Membership {
	case "join":
		rd.joinedLate = noLimit
	case "leave", "ban":
		// Left after being joined? Then they were joined right before.
		rec, err := tx.Event(current.Pos)
		if err != nil {
			return nil, err
		}
		before, err := rd.at(rec.StateBefore)
		if err != nil {
			return nil, err
		}
		if before.membership == "join" {
			rd.joinedLate = current.Pos
		}
	}
	return rd, nil
}

// at returns the history visibility and the user's membership in a state
// snapshot.
func (rd *reader) at(snap uint64) (snapView, error) {
	if v, ok := rd.snaps[snap]; ok {
		return v, nil
	}
	v := snapView{visibility: "shared"}
	st, err := rd.tx.StateAt(snap)
	if err != nil {
		return v, err
	}
	if pos, ok := st[store.StateKey{Type: "m.room.history_visibility"}]; ok {
		var c struct {
			V string `json:"history_visibility"`
		}
		if err := rd.content(pos, &c); err != nil {
			return v, err
		}
		if c.V != "" {
			v.visibility = c.V
		}
	}
	if pos, ok := st[store.StateKey{Type: "m.room.member", Key: rd.userID}]; ok {
		var c struct {
			M string `json:"membership"`
		}
		if err := rd.content(pos, &c); err != nil {
			return v, err
		}
		v.membership = c.M
	}
	rd.snaps[snap] = v
	return v, nil
}

func (rd *reader) content(pos uint64, v any) error {
	rec, err := rd.tx.Event(pos)
	if err != nil {
		return err
	}
	ev, err := parseRec(rd.room.Version, rec)
	if err != nil {
		return err
	}
	_ = json.Unmarshal(ev.Content(), v)
	return nil
}

// visible reports whether the user may see the event.
func (rd *reader) visible(rec *store.StoredEvent) (bool, error) {
	v, err := rd.at(rec.StateBefore)
	if err != nil {
		return false, err
	}
	if rd.current != nil && rec.Pos == rd.current.Pos {
		return true, nil // everyone sees their own latest membership change
	} else if own, err := rd.ownMemberEvent(rec); err != nil {
		return false, err
	} else if own != "" {
		v.membership = own
	}
	switch {
	case v.visibility == "world_readable":
		return true, nil
	case v.membership == "join":
		return true, nil
	case v.visibility == "shared" && rd.joinedLate > rec.Pos:
		return true, nil
	case v.visibility == "invited" && v.membership == "invite":
		return true, nil
	}
	return false, nil
}

// ownMemberEvent returns the new membership if rec is the user's own
// member event, else "".
func (rd *reader) ownMemberEvent(rec *store.StoredEvent) (string, error) {
	ev, err := parseRec(rd.room.Version, rec)
	if err != nil {
		return "", err
	}
	if ev.Type() != "m.room.member" || !ev.StateKeyIs(rd.userID) {
		return "", nil
	}
	m, _ := ev.Membership()
	return m, nil
}
