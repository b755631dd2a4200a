// Package rooms is the room core: each room has one serialised writer that
// builds local events, checks them against the auth rules and the room's
// current state, and persists everything they change in one transaction.
package rooms

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// MaxEventSize is the spec's limit on an event's JSON, in bytes.
const MaxEventSize = 65536

// Service writes and reads the rooms of one server.
type Service struct {
	store      *store.Store
	signer     pdu.Signer
	serverName string
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex             // guards locks
	locks   map[string]*sync.Mutex // one writer per room
	heads   *headCache             // the parsed events the writers build on
	members memberCache            // each room's members, joined members and servers
	misses  backfillMisses         // gaps no server filled lately

	// Unread counts unread notifications for sync; the push rules replace
	// the default.
	Unread UnreadCounter

	remote     Remote      // other servers, nil without federation
	handshakes Handshakes  // our users' membership in rooms elsewhere
	keys       pdu.KeyFunc // other servers' signing keys

	// OnNotify, when set, wakes the syncs of users an event concerns that
	// are not in the room's state (the invitee of a remote invite).
	OnNotify func(pos uint64, users ...string)

	// QueueLocalEvent, when set, queues an event for the other servers
	// named, in the transaction that stores it, so no crash can keep one
	// without the other: an event one of our users sent, or another
	// server's member event we accepted through send_join, send_leave or
	// send_knock. after, called once that transaction is durable, starts
	// the delivery.
	QueueLocalEvent func(tx *store.Tx, servers []string, ev []byte) (after func(), err error)

	// OnAppend, when set, is called after events are durable, with the
	// newest position and the rooms they are in. Sync wakes its waiters
	// from it.
	OnAppend func(pos uint64, roomIDs ...string)

	// OnJoined, when set, is called once a local user's join is durable,
	// in a room here or one joined through another server, if they were
	// not joined before (a new display name is no join): the servers they
	// now share a room with may not know their devices.
	OnJoined func(userID, roomID string)
}

// New returns the room service.
func New(st *store.Store, signer pdu.Signer, log *slog.Logger) *Service {
	return &Service{store: st, signer: signer, serverName: signer.ServerName, log: log, now: time.Now, locks: map[string]*sync.Mutex{}, heads: newHeadCache(), Unread: messageCounter{}}
}

// ServerName returns the name of this server.
func (s *Service) ServerName() string { return s.serverName }

// lockRoom serialises writers of one room; rooms never wait on each other.
func (s *Service) lockRoom(roomID string) func() {
	s.mu.Lock()
	l := s.locks[roomID]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[roomID] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Draft is a local event to send.
type Draft struct {
	Sender   string
	Type     string
	StateKey *string // nil for a message-like event
	Content  json.RawMessage
	Redacts  string
	Txn      *store.TxnKey
	// exchange, when set, replaces the built event before it is stored:
	// an invite of a remote user, countersigned by their server.
	exchange func(*pdu.Event) (*pdu.Event, error)
}

// head is a room as the next event sees it: its version, where the
// timeline ends and its current state.
type head struct {
	version string
	roomID  string
	prev    []string
	depth   int64
	state   map[pdu.StateKey]*pdu.Event
}

// build makes, signs and authorises the next event of h and advances h.
func (s *Service) build(h *head, d *Draft) (*pdu.Event, error) {
	p := &pdu.Proto{
		Version: h.version, RoomID: h.roomID, Sender: d.Sender, Type: d.Type, StateKey: d.StateKey,
		Content: d.Content, PrevEvents: h.prev, Depth: h.depth + 1, Redacts: d.Redacts,
	}
	needed, err := pdu.AuthStateNeeded(p)
	if err != nil {
		return nil, mxerr.BadJSON("Invalid event content: %v", err)
	}
	var authState []*pdu.Event
	for _, sk := range append(needed, pdu.StateKey{Type: "m.room.create"}) {
		if ev := h.state[sk]; ev != nil {
			authState = append(authState, ev)
		}
	}
	// The library refuses events over MaxEventSize before the auth rules
	// are asked, so a refusal is about the event, not its sender.
	ev, err := pdu.BuildAllowed(p, authState, s.signer, s.now())
	if errors.Is(err, pdu.ErrTooLarge) {
		return nil, mxerr.TooLarge("Event is larger than %d bytes", MaxEventSize)
	}
	if pdu.IsBadContent(err) {
		return nil, mxerr.BadJSON("Invalid event: %v", err)
	}
	if errors.Is(err, pdu.ErrNotAllowed) {
		return nil, mxerr.Forbidden("%s", err)
	}
	if err != nil {
		return nil, err
	}
	if len(ev.JSON()) > MaxEventSize {
		return nil, mxerr.TooLarge("Event is larger than %d bytes", MaxEventSize)
	}
	if h.roomID == "" {
		h.roomID = ev.RoomID()
	}
	h.prev, h.depth = []string{ev.ID()}, ev.Depth()
	if ev.IsState() {
		h.state[pdu.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev
	}
	return ev, nil
}

// loadHead reads what the next event d of a room needs from the store:
// the forward extremities and, of the current state, only the events the
// auth rules need for d, so a send costs the same in a room of any size.
// Only the room's writer may call it, between lockRoom and the append.
func (s *Service) loadHead(tx *store.Tx, room *store.Room, d *Draft) (*head, error) {
	h := &head{version: room.Version, roomID: room.RoomID, depth: room.Depth, state: map[pdu.StateKey]*pdu.Event{}}
	for _, p := range room.Extremities {
		ev, err := s.heads.event(tx, room.Version, p)
		if err != nil {
			return nil, err
		}
		h.prev = append(h.prev, ev.ID())
	}
	needed, err := pdu.AuthStateNeeded(&pdu.Proto{Version: room.Version, RoomID: room.RoomID, Sender: d.Sender, Type: d.Type, StateKey: d.StateKey, Content: d.Content})
	if err != nil {
		return nil, mxerr.BadJSON("Invalid event content: %v", err)
	}
	for _, sk := range append(needed, pdu.StateKey{Type: "m.room.create"}) {
		pos, err := tx.CurrentStateEvent(room.NID, store.StateKey{Type: sk.Type, Key: sk.StateKey})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if h.state[sk], err = s.heads.event(tx, room.Version, pos); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// knownRoom returns the room roomID, or M_NOT_FOUND when this server has
// never heard of it.
func knownRoom(tx *store.Tx, roomID string) (*store.Room, error) {
	room, err := tx.RoomByID(roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("Unknown room")
	}
	return room, err
}

// roomIfKnown returns a room by ID, or nil (and no error) when this
// server does not know it.
func roomIfKnown(tx *store.Tx, roomID string) (*store.Room, error) {
	room, err := tx.RoomByID(roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return room, err
}

// parseRec parses a stored event, with the ID its record keeps.
func parseRec(version string, rec *store.StoredEvent) (*pdu.Event, error) {
	return pdu.ParseStored(version, rec.JSON, rec.Flags&store.FlagRedacted != 0, rec.ID)
}

func (s *Service) eventAt(tx *store.Tx, version string, pos uint64) (*pdu.Event, error) {
	rec, err := tx.Event(pos)
	if err != nil {
		return nil, fmt.Errorf("event at %d: %w", pos, err)
	}
	return parseRec(version, rec)
}

func newEvent(ev *pdu.Event, txn *store.TxnKey) *store.NewEvent {
	ne := &store.NewEvent{EventID: ev.ID(), JSON: ev.JSON(), Depth: ev.Depth(), Type: ev.Type(), StateKey: ev.StateKey(), PrevEvents: ev.PrevEventIDs(), Txn: txn}
	if ev.Type() == "m.room.member" {
		ne.Membership, _ = ev.Membership()
	}
	return ne
}

// Send builds, authorises and persists one local event in a room, and
// returns its ID. A draft with a transaction already sent returns the
// first event's ID again.
func (s *Service) Send(roomID string, d *Draft) (string, error) {
	unlock := s.lockRoom(roomID)
	defer unlock()
	var room *store.Room
	var h *head
	var existing string
	var servers []string // the other servers in the room, whom the event goes to
	var ps *policyServer // the room's policy server, if the event goes by it
	err := s.store.View(func(tx *store.Tx) (err error) {
		room, err = knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if d.StateKey != nil {
			// Setting state to what it already is, by the same sender,
			// changes nothing: Synapse answers with the current event.
			if id, same := s.sameState(tx, room, d); same {
				existing = id
				return nil
			}
		}
		if d.Txn != nil {
			if pos, err := tx.TxnEvent(d.Txn, room.NID); err == nil {
				ev, err := s.eventAt(tx, room.Version, pos)
				if err != nil {
					return err
				}
				existing = ev.ID()
				return nil
			}
		}
		if d, err = s.checkDraft(tx, room, d); err != nil {
			return err
		}
		if h, err = s.loadHead(tx, room, d); err != nil {
			return err
		}
		if !policyExempt(d.Type, d.StateKey) {
			if ps, err = s.policyServerOf(tx, room); err != nil {
				return err
			}
		}
		joined, err := s.joinedServers(tx, room)
		servers = slices.DeleteFunc(slices.Clone(joined), func(n string) bool { return n == s.serverName })
		return err
	})
	if err != nil || existing != "" {
		return existing, err
	}
	newJoin := s.joinsLocal(h, d)
	ev, err := s.build(h, d)
	if err != nil {
		return "", err
	}
	if ev, err = s.policySign(ps, ev); err != nil {
		return "", err
	}
	if d.exchange != nil {
		if ev, err = d.exchange(ev); err != nil {
			return "", err
		}
	}
	if m, _ := ev.Membership(); ev.Type() == "m.room.member" && (m == "leave" || m == "ban") {
		if server := serverOf(*ev.StateKey()); server != s.serverName && !slices.Contains(servers, server) {
			servers = append(servers, server) // a kicked or banned user's server
		}
	}
	var pos uint64
	var deliver func()
	err = s.store.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(room.NID)
		if err != nil {
			return err
		}
		if err := s.validateStateEvent(tx, r, ev.Type(), ev.StateKey(), ev.Content()); err != nil {
			return err
		}
		if pos, err = tx.AppendEvent(r, newEvent(ev, d.Txn)); err != nil {
			return err
		}
		if err := s.indexEvent(tx, r, ev, pos, d.Txn); err != nil {
			return err
		}
		if s.QueueLocalEvent != nil && len(servers) > 0 {
			deliver, err = s.QueueLocalEvent(tx, servers, ev.JSON())
		}
		return err
	})
	if err != nil {
		return "", err
	}
	s.heads.add(pos, room.Version, 0, ev.JSON(), ev) // the next send's prev event
	s.appended(pos, roomID)
	if deliver != nil {
		deliver()
	}
	if m, _ := ev.Membership(); newJoin && m == "join" {
		s.joined(*ev.StateKey(), roomID)
	}
	return ev.ID(), nil
}

// joinsLocal reports whether d is the member event of a local user who
// is not joined to h's room yet; the event itself decides whether it is a
// join.
func (s *Service) joinsLocal(h *head, d *Draft) bool {
	if d.Type != "m.room.member" || d.StateKey == nil || serverOf(*d.StateKey) != s.serverName {
		return false
	}
	cur := h.state[pdu.StateKey{Type: "m.room.member", StateKey: *d.StateKey}]
	if cur == nil {
		return true
	}
	m, _ := cur.Membership()
	return m != "join"
}

func (s *Service) joined(userID, roomID string) {
	if s.OnJoined != nil {
		s.OnJoined(userID, roomID)
	}
}

// sameState reports whether the room's current state event for d's type
// and key was sent by d's sender with the same content, and its ID.
func (s *Service) sameState(tx *store.Tx, room *store.Room, d *Draft) (string, bool) {
	pos, err := tx.CurrentStateEvent(room.NID, store.StateKey{Type: d.Type, Key: *d.StateKey})
	if err != nil {
		return "", false
	}
	cur, err := s.eventAt(tx, room.Version, pos)
	if err != nil || cur.Sender() != d.Sender || cur.Redacted() {
		return "", false
	}
	var a, b any
	if json.Unmarshal(cur.Content(), &a) != nil || json.Unmarshal(d.Content, &b) != nil {
		return "", false
	}
	return cur.ID(), reflect.DeepEqual(a, b)
}

func (s *Service) appended(pos uint64, roomIDs ...string) {
	if s.OnAppend != nil {
		s.OnAppend(pos, roomIDs...)
	}
}

// MemberIDs returns everyone with a member event in a room's current
// state (joined, invited, knocking, left or banned): the users a new event
// there may concern. It runs after every event, so the list is cached per
// room and follows the room's state (see memberCache).
func (s *Service) MemberIDs(roomID string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		m, err := s.memberSets(tx, room)
		if err == nil {
			out = slices.Clip(m.all)
		}
		return err
	})
	return out, err
}
