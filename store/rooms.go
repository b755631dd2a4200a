package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Room is what the store keeps about a room besides its events.
type Room struct {
	RoomID  string `json:"room_id"`
	NID     uint64 `json:"nid"`
	Version string `json:"version"`
	// Extremities are the positions of the forward extremities: the
	// events no other event follows yet, the prev_events of the next one.
	Extremities []uint64 `json:"extremities"`
	Depth       int64    `json:"depth"`     // the greatest depth in the room
	CurrentSnap uint64   `json:"snap"`      // snapshot of the current state: a new one for every change of it
	Published   bool     `json:"published"` // listed in the public room directory
}

// StateKey names one piece of room state.
type StateKey struct {
	Type, Key string
}

// Event flags.
const (
	// FlagOutlier: known (an auth event, an invite) but not in the timeline.
	FlagOutlier uint8 = 1 << iota
	// FlagRedacted: the JSON is the redacted form.
	FlagRedacted
	// FlagRejected: the event failed the auth rules (or arrived broken)
	// and is kept only so it is not fetched and judged again; it is never
	// served and never part of any state.
	FlagRejected
	// FlagSoftFailed: a remote event allowed by the state before it but
	// not by the room's current state: kept off the timeline and out of
	// the current state, though later events may refer to it.
	FlagSoftFailed
)

// Hidden reports whether an event must not be served at all.
func (e *StoredEvent) Hidden() bool { return e.Flags&(FlagRejected|FlagSoftFailed) != 0 }

// StoredEvent is an event as the store holds it.
type StoredEvent struct {
	Pos         uint64
	RoomNID     uint64
	StateBefore uint64 // snapshot of the room state before the event
	Flags       uint8
	// ID is the event ID, "" in records written before it was kept
	// (room versions 3 and later have no event_id in their JSON, and
	// computing it means redacting, encoding and hashing the event).
	ID   string
	JSON []byte
}

// eventRecord layout: room NID (8), state-before snapshot (8), flags (1),
// then, when the flags byte has recordHasID, the event ID's length (1)
// and the ID, then the event JSON.
const eventHeader = 17

// recordHasID marks, in a record's flags byte, a record that keeps its
// event ID; it is not one of the event's Flags.
const recordHasID uint8 = 1 << 7

func encodeEvent(e *StoredEvent) []byte {
	id := e.ID
	if len(id) > 255 {
		id = "" // longer than any valid event ID: left to be computed
	}
	b := make([]byte, eventHeader, eventHeader+1+len(id)+len(e.JSON))
	binary.BigEndian.PutUint64(b[0:], e.RoomNID)
	binary.BigEndian.PutUint64(b[8:], e.StateBefore)
	b[16] = e.Flags &^ recordHasID
	if id != "" {
		b[16] |= recordHasID
		b = append(append(b, byte(len(id))), id...)
	}
	return append(b, e.JSON...)
}

// splitRecord returns a record's flags, event ID ("" if not kept) and
// JSON, the last two in b's memory.
func splitRecord(pos uint64, b []byte) (flags uint8, id string, js []byte, err error) {
	if len(b) < eventHeader {
		return 0, "", nil, fmt.Errorf("store: event %d: short record", pos)
	}
	flags, rest := b[16], b[eventHeader:]
	if flags&recordHasID != 0 {
		if len(rest) == 0 || len(rest) < 1+int(rest[0]) {
			return 0, "", nil, fmt.Errorf("store: event %d: short record", pos)
		}
		id, rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	}
	return flags &^ recordHasID, id, rest, nil
}

func decodeEvent(pos uint64, b []byte) (*StoredEvent, error) {
	flags, id, js, err := splitRecord(pos, b)
	if err != nil {
		return nil, err
	}
	return &StoredEvent{
		Pos: pos, RoomNID: binary.BigEndian.Uint64(b[0:]), StateBefore: binary.BigEndian.Uint64(b[8:]),
		Flags: flags, ID: id, JSON: slices.Clone(js),
	}, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func nidKey(nid uint64, rest ...[]byte) []byte {
	k := u64(nid)
	for _, r := range rest {
		k = append(k, r...)
	}
	return k
}

func stateKeyBytes(sk StateKey) []byte {
	return append(append([]byte(sk.Type), 0), sk.Key...)
}

// CreateRoom registers a new room and returns it; ErrExists if the ID is
// taken.
func (tx *Tx) CreateRoom(roomID, version string) (*Room, error) {
	ids := tx.btx.Bucket(bucketRoomIDs)
	if ids.Get([]byte(roomID)) != nil {
		return nil, ErrExists
	}
	nid, err := ids.NextSequence()
	if err != nil {
		return nil, err
	}
	r := &Room{RoomID: roomID, NID: nid, Version: version, Extremities: []uint64{}}
	if err := ids.Put([]byte(roomID), u64(nid)); err != nil {
		return nil, err
	}
	return r, tx.PutRoom(r)
}

// PutRoom stores a room record.
func (tx *Tx) PutRoom(r *Room) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: encode room %d: %w", r.NID, err)
	}
	key := u64(r.NID)
	if err := tx.btx.Bucket(bucketRooms).Put(key, raw); err != nil {
		return err
	}
	// Every event rewrites its room: the next read finds it decoded.
	v := *r
	v.Extremities = slices.Clone(r.Extremities)
	tx.memos.rooms.remember(key, raw, v)
	return nil
}

// RoomByID returns a room, or ErrNotFound.
func (tx *Tx) RoomByID(roomID string) (*Room, error) {
	nid := tx.btx.Bucket(bucketRoomIDs).Get([]byte(roomID))
	if nid == nil {
		return nil, ErrNotFound
	}
	return tx.RoomByNID(binary.BigEndian.Uint64(nid))
}

// RoomByNID returns a room by its numeric ID, or ErrNotFound.
func (tx *Tx) RoomByNID(nid uint64) (*Room, error) {
	r, err := getMemo(tx, &tx.memos.rooms, bucketRooms, u64(nid))
	if err != nil {
		return nil, err
	}
	r.Extremities = slices.Clone(r.Extremities) // the memo's
	return &r, nil
}

// Rooms calls fn for every room.
func (tx *Tx) Rooms(fn func(r *Room) error) error {
	return tx.btx.Bucket(bucketRooms).ForEach(func(k, v []byte) error {
		var r Room
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("store: decode room: %w", err)
		}
		return fn(&r)
	})
}

// Event returns the event at a position, or ErrNotFound.
func (tx *Tx) Event(pos uint64) (*StoredEvent, error) {
	b := tx.btx.Bucket(bucketEvents).Get(u64(pos))
	if b == nil {
		return nil, ErrNotFound
	}
	return decodeEvent(pos, b)
}

// EventRaw returns the flags, the event ID ("" where the record does
// not keep it) and the JSON of the event at a position, or ErrNotFound;
// js is not copied: it is valid only until the transaction ends and must
// not be changed.
func (tx *Tx) EventRaw(pos uint64) (flags uint8, id string, js []byte, err error) {
	b := tx.btx.Bucket(bucketEvents).Get(u64(pos))
	if b == nil {
		return 0, "", nil, ErrNotFound
	}
	return splitRecord(pos, b)
}

// EventPos returns the position of an event ID, or ErrNotFound.
func (tx *Tx) EventPos(eventID string) (uint64, error) {
	b := tx.btx.Bucket(bucketEventIDs).Get([]byte(eventID))
	if b == nil {
		return 0, ErrNotFound
	}
	return binary.BigEndian.Uint64(b), nil
}

// EventByID returns an event by ID, or ErrNotFound.
func (tx *Tx) EventByID(eventID string) (*StoredEvent, error) {
	pos, err := tx.EventPos(eventID)
	if err != nil {
		return nil, err
	}
	return tx.Event(pos)
}

// LatestPos returns the newest stream position.
func (tx *Tx) LatestPos() uint64 {
	return tx.btx.Bucket(bucketEvents).Sequence()
}

// ReplaceEventJSON overwrites an event's JSON (with its redacted form) and
// sets flags on it.
func (tx *Tx) ReplaceEventJSON(pos uint64, js []byte, setFlags uint8) error {
	e, err := tx.Event(pos)
	if err != nil {
		return err
	}
	e.JSON, e.Flags = js, e.Flags|setFlags
	return tx.btx.Bucket(bucketEvents).Put(u64(pos), encodeEvent(e))
}

// TxnKey identifies a client transaction: the same key returns the same
// event.
type TxnKey struct {
	Localpart, DeviceID, TxnID string
}

func txnKey(k *TxnKey, nid uint64) []byte {
	b := append([]byte(k.Localpart), 0)
	b = append(append(b, k.DeviceID...), 0)
	b = append(b, u64(nid)...)
	return append(b, k.TxnID...)
}

// TxnEvent returns the position of the event a transaction made, or
// ErrNotFound.
func (tx *Tx) TxnEvent(k *TxnKey, roomNID uint64) (uint64, error) {
	b := tx.btx.Bucket(bucketTxnIDs).Get(txnKey(k, roomNID))
	if b == nil {
		return 0, ErrNotFound
	}
	return binary.BigEndian.Uint64(b), nil
}

// NewEvent is an event to append to a room's timeline, with what it
// changes.
type NewEvent struct {
	EventID    string
	JSON       []byte
	Depth      int64
	Type       string
	StateKey   *string // nil for a non-state event
	PrevEvents []string
	// Membership is content.membership of an m.room.member event.
	Membership string
	Txn        *TxnKey // the client transaction that sent it, if any
	// StateBefore, when not nil, is the snapshot of the state before the
	// event, which for a remote event may differ from the room's current
	// state; nil means the current state.
	StateBefore *uint64
	// Current, when not nil, is the room's current state after the event
	// (for a remote event, the resolution of the state after it with the
	// other forward extremities' state); nil means the state after the
	// event. store.ThisEvent in it stands for the event's own position.
	Current map[StateKey]uint64
}

// ThisEvent stands for an appended event's own position in
// NewEvent.Current, which is not known before the append.
const ThisEvent = ^uint64(0)

// Membership is a user's membership of a room.
type Membership struct {
	RoomNID    uint64 `json:"room"`
	Membership string `json:"membership"`
	Pos        uint64 `json:"pos"` // the member event
	Forgotten  bool   `json:"forgotten,omitempty"`
}

// AppendEvent persists ev as the newest event of room, the state after it
// becoming the room's current state: the event record, the stream and
// topological indexes, a state snapshot delta and the current state for a
// state event, the membership index for a member event, the forward
// extremities, the transaction map, and the gap before ev if it follows
// one (see GapPrevs). room is updated in place.
func (tx *Tx) AppendEvent(room *Room, ev *NewEvent) (uint64, error) {
	events := tx.btx.Bucket(bucketEvents)
	var pos uint64
	if old, err := tx.EventByID(ev.EventID); err == nil {
		if old.Flags&FlagOutlier == 0 || old.Flags&FlagRejected != 0 {
			return 0, fmt.Errorf("store: event %s: %w", ev.EventID, ErrExists)
		}
		// An outlier joins the timeline where it was stored: its
		// position may be in state snapshots already. (A client that
		// synced past it sees it in /messages, not in /sync.)
		pos = old.Pos
	} else if pos, err = events.NextSequence(); err != nil {
		return 0, err
	}
	before := room.CurrentSnap
	if ev.StateBefore != nil {
		before = *ev.StateBefore
	}
	rec := &StoredEvent{Pos: pos, RoomNID: room.NID, StateBefore: before, ID: ev.EventID, JSON: ev.JSON}
	if err := events.Put(u64(pos), encodeEvent(rec)); err != nil {
		return 0, err
	}
	if err := tx.btx.Bucket(bucketEventIDs).Put([]byte(ev.EventID), u64(pos)); err != nil {
		return 0, err
	}
	if err := tx.btx.Bucket(bucketRoomStream).Put(nidKey(room.NID, u64(pos)), nil); err != nil {
		return 0, err
	}
	if err := tx.btx.Bucket(bucketRoomTopo).Put(nidKey(room.NID, u64(uint64(ev.Depth)), u64(pos)), nil); err != nil {
		return 0, err
	}
	if err := tx.markGap(room.NID, pos, ev.Depth, ev.PrevEvents, true); err != nil {
		return 0, err
	}
	after := before
	if ev.StateKey != nil {
		var err error
		if after, err = tx.addSnapshot(before, map[StateKey]uint64{{ev.Type, *ev.StateKey}: pos}); err != nil {
			return 0, err
		}
	}
	switch {
	case ev.Current == nil && before == room.CurrentSnap:
		// The common case, every local event: the state after the event
		// is the current state plus, at most, the event itself.
		if ev.StateKey != nil {
			if err := tx.setCurrent(room.NID, StateKey{ev.Type, *ev.StateKey}, pos, ev.Membership); err != nil {
				return 0, err
			}
		}
		room.CurrentSnap = after
	case ev.Current == nil:
		if err := tx.replaceCurrent(room, after); err != nil {
			return 0, err
		}
	default:
		cur := make(map[StateKey]uint64, len(ev.Current))
		for k, v := range ev.Current {
			if v == ThisEvent {
				v = pos
			}
			cur[k] = v
		}
		snap, err := tx.NewSnapshot(cur, after)
		if err != nil {
			return 0, err
		}
		if err := tx.replaceCurrent(room, snap); err != nil {
			return 0, err
		}
	}
	// The new event follows its prev events: they stop being extremities.
	prevs := make([]uint64, 0, len(ev.PrevEvents))
	for _, id := range ev.PrevEvents {
		if p, err := tx.EventPos(id); err == nil {
			prevs = append(prevs, p)
		}
	}
	ext := room.Extremities[:0:0]
	for _, p := range room.Extremities {
		if !slices.Contains(prevs, p) {
			ext = append(ext, p)
		}
	}
	room.Extremities = append(ext, pos)
	room.Depth = max(room.Depth, ev.Depth)
	if ev.Txn != nil {
		if err := tx.btx.Bucket(bucketTxnIDs).Put(txnKey(ev.Txn, room.NID), u64(pos)); err != nil {
			return 0, err
		}
	}
	return pos, tx.PutRoom(room)
}

// setCurrent makes pos the current state event of sk in a room, and
// indexes a member event's membership.
func (tx *Tx) setCurrent(roomNID uint64, sk StateKey, pos uint64, membership string) error {
	if err := tx.btx.Bucket(bucketRoomState).Put(nidKey(roomNID, stateKeyBytes(sk)), u64(pos)); err != nil {
		return err
	}
	if sk.Type != "m.room.member" {
		return nil
	}
	m := &Membership{RoomNID: roomNID, Membership: membership, Pos: pos}
	if old, err := tx.MembershipOf(sk.Key, roomNID); err == nil {
		m.Forgotten = old.Forgotten && membership != "join" && membership != "invite"
	}
	return tx.putJSON(bucketMembers, memberKey(sk.Key, roomNID), m)
}

// replaceCurrent makes snapshot snap the room's current state, rewriting
// the materialised current state and membership index where they differ.
func (tx *Tx) replaceCurrent(room *Room, snap uint64) error {
	old, err := tx.StateAt(room.CurrentSnap)
	if err != nil {
		return err
	}
	cur, err := tx.StateAt(snap)
	if err != nil {
		return err
	}
	for sk := range old {
		if _, ok := cur[sk]; ok {
			continue
		}
		if err := tx.btx.Bucket(bucketRoomState).Delete(nidKey(room.NID, stateKeyBytes(sk))); err != nil {
			return err
		}
		if sk.Type == "m.room.member" {
			if err := tx.btx.Bucket(bucketMembers).Delete(memberKey(sk.Key, room.NID)); err != nil {
				return err
			}
		}
	}
	for sk, pos := range cur {
		if old[sk] == pos {
			continue
		}
		var membership string
		if sk.Type == "m.room.member" {
			e, err := tx.Event(pos)
			if err != nil {
				return fmt.Errorf("store: member event %d: %w", pos, err)
			}
			membership = eventMembership(e.JSON)
		}
		if err := tx.setCurrent(room.NID, sk, pos, membership); err != nil {
			return err
		}
	}
	room.CurrentSnap = snap
	return nil
}

// eventMembership returns content.membership of a member event's JSON.
// MembershipAt returns content.membership of the member event at pos,
// read from its JSON without parsing the event.
func (tx *Tx) MembershipAt(pos uint64) (string, error) {
	_, _, js, err := tx.EventRaw(pos)
	if err != nil {
		return "", err
	}
	return eventMembership(js), nil
}

func eventMembership(js []byte) string {
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(js, &ev)
	return ev.Content.Membership
}

// AddHistory stores an event of a room's past that another server gave
// us (backfill): in the topological order that /messages pages through,
// with the state before it, but not in the stream that /sync delivers,
// and changing neither the current state nor the forward extremities; the
// gap before it, if it follows one, becomes a backfill point. An outlier
// of that ID joins the timeline where it was stored.
func (tx *Tx) AddHistory(room *Room, ev *NewEvent, stateBefore uint64) (uint64, error) {
	events := tx.btx.Bucket(bucketEvents)
	var pos uint64
	if old, err := tx.EventByID(ev.EventID); err == nil {
		if old.Flags&FlagOutlier == 0 || old.Flags&FlagRejected != 0 {
			return 0, fmt.Errorf("store: event %s: %w", ev.EventID, ErrExists)
		}
		pos = old.Pos
	} else if pos, err = events.NextSequence(); err != nil {
		return 0, err
	}
	rec := &StoredEvent{Pos: pos, RoomNID: room.NID, StateBefore: stateBefore, ID: ev.EventID, JSON: ev.JSON}
	if err := events.Put(u64(pos), encodeEvent(rec)); err != nil {
		return 0, err
	}
	if err := tx.btx.Bucket(bucketEventIDs).Put([]byte(ev.EventID), u64(pos)); err != nil {
		return 0, err
	}
	if err := tx.btx.Bucket(bucketRoomTopo).Put(nidKey(room.NID, u64(uint64(ev.Depth)), u64(pos)), nil); err != nil {
		return 0, err
	}
	return pos, tx.markGap(room.NID, pos, ev.Depth, ev.PrevEvents, false)
}

// SetOutlierMembership records a user's membership of a room we are not
// in, such as a remote invite stored as an outlier at pos.
func (tx *Tx) SetOutlierMembership(userID string, roomNID uint64, membership string, pos uint64) error {
	return tx.putJSON(bucketMembers, memberKey(userID, roomNID), &Membership{RoomNID: roomNID, Membership: membership, Pos: pos})
}

// AddOutlier stores an event that is not part of a room's timeline: an
// auth event or a piece of state learnt from another server, or a
// rejected or soft-failed event (with its flag). stateBefore is the
// snapshot of the state before it, 0 if unknown. An event already stored
// returns its position.
func (tx *Tx) AddOutlier(roomNID uint64, eventID string, js []byte, flags uint8, stateBefore uint64) (uint64, error) {
	if pos, err := tx.EventPos(eventID); err == nil {
		return pos, nil
	}
	events := tx.btx.Bucket(bucketEvents)
	pos, err := events.NextSequence()
	if err != nil {
		return 0, err
	}
	rec := &StoredEvent{Pos: pos, RoomNID: roomNID, StateBefore: stateBefore, Flags: flags | FlagOutlier, ID: eventID, JSON: js}
	if err := events.Put(u64(pos), encodeEvent(rec)); err != nil {
		return 0, err
	}
	return pos, tx.btx.Bucket(bucketEventIDs).Put([]byte(eventID), u64(pos))
}

func memberKey(userID string, nid uint64) []byte {
	return append(append([]byte(userID), 0), u64(nid)...)
}

// MembershipOf returns a user's membership of a room, or ErrNotFound if
// the user never had one.
func (tx *Tx) MembershipOf(userID string, roomNID uint64) (*Membership, error) {
	var m Membership
	if err := tx.getJSON(bucketMembers, memberKey(userID, roomNID), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// SetForgotten marks a left room as forgotten by the user.
func (tx *Tx) SetForgotten(userID string, roomNID uint64) error {
	m, err := tx.MembershipOf(userID, roomNID)
	if err != nil {
		return err
	}
	m.Forgotten = true
	return tx.putJSON(bucketMembers, memberKey(userID, roomNID), m)
}

// Memberships returns every room membership of a user.
func (tx *Tx) Memberships(userID string) ([]Membership, error) {
	prefix := append([]byte(userID), 0)
	var out []Membership
	c := tx.btx.Bucket(bucketMembers).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			continue // a longer user ID that shares the prefix
		}
		var m Membership
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("store: decode membership: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// CurrentStateEvent returns the position of one piece of a room's current
// state, or ErrNotFound.
func (tx *Tx) CurrentStateEvent(roomNID uint64, sk StateKey) (uint64, error) {
	b := tx.btx.Bucket(bucketRoomState).Get(nidKey(roomNID, stateKeyBytes(sk)))
	if b == nil {
		return 0, ErrNotFound
	}
	return binary.BigEndian.Uint64(b), nil
}

// CurrentState returns a room's current state, optionally only of one
// event type ("" for all).
func (tx *Tx) CurrentState(roomNID uint64, onlyType string) (map[StateKey]uint64, error) {
	prefix := u64(roomNID)
	if onlyType != "" {
		prefix = append(prefix, append([]byte(onlyType), 0)...)
	}
	out := map[StateKey]uint64{}
	c := tx.btx.Bucket(bucketRoomState).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		typ, key, ok := bytes.Cut(k[8:], []byte{0})
		if !ok {
			return nil, errors.New("store: malformed current state key")
		}
		out[StateKey{string(typ), string(key)}] = binary.BigEndian.Uint64(v)
	}
	return out, nil
}

// TimelineDir is a direction of timeline pagination.
type TimelineDir int

// Directions of pagination.
const (
	Backward TimelineDir = iota // newest first
	Forward                     // oldest first
)

// TopoToken is a place in a room's topological order.
type TopoToken struct {
	Depth int64
	Pos   uint64
}

// TimelineEntry is an event and its place in the topological order.
type TimelineEntry struct {
	Event *StoredEvent
	Token TopoToken
}

// Timeline returns up to limit events of a room in topological order,
// strictly after from in direction dir (nil starts at the end the
// direction starts from).
func (tx *Tx) Timeline(roomNID uint64, from *TopoToken, dir TimelineDir, limit int) ([]TimelineEntry, error) {
	return tx.TimelineUpto(roomNID, from, dir, limit, ^uint64(0))
}

// TimelineUpto is Timeline without the live events after stream position
// upto: the room as a sync token up to there saw it, with all the history
// backfilled since, which /sync never delivers.
func (tx *Tx) TimelineUpto(roomNID uint64, from *TopoToken, dir TimelineDir, limit int, upto uint64) ([]TimelineEntry, error) {
	c := tx.btx.Bucket(bucketRoomTopo).Cursor()
	prefix := u64(roomNID)
	var k []byte
	switch {
	case dir == Forward && from == nil:
		k, _ = c.Seek(prefix)
	case dir == Forward:
		k, _ = c.Seek(nidKey(roomNID, u64(uint64(from.Depth)), u64(from.Pos+1)))
	case from == nil:
		if k, _ = c.Seek(u64(roomNID + 1)); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	default:
		c.Seek(nidKey(roomNID, u64(uint64(from.Depth)), u64(from.Pos)))
		k, _ = c.Prev()
	}
	var out []TimelineEntry
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k = step(c, dir) {
		pos := binary.BigEndian.Uint64(k[16:])
		if pos > upto && tx.isLive(roomNID, pos) {
			continue
		}
		ev, err := tx.Event(pos)
		if err != nil {
			return nil, err
		}
		out = append(out, TimelineEntry{Event: ev, Token: TopoToken{Depth: int64(binary.BigEndian.Uint64(k[8:])), Pos: pos}})
	}
	return out, nil
}

func step(c *bolt.Cursor, dir TimelineDir) []byte {
	var k []byte
	if dir == Forward {
		k, _ = c.Next()
	} else {
		k, _ = c.Prev()
	}
	return k
}
