package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"hearth/server/filter"
	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// ClientEvent is an event in the client format of the Client-Server API.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
}

// newClientEvent is ev's client format before anything is bundled:
// unsigned carries only its age.
func (s *Service) newClientEvent(ev *pdu.Event) *ClientEvent {
	return &ClientEvent{
		Content: ev.Content(), EventID: ev.ID(), OriginServerTS: ev.OriginServerTS(), RoomID: ev.RoomID(),
		Sender: ev.Sender(), StateKey: ev.StateKey(), Type: ev.Type(), Redacts: ev.Redacts(),
		Unsigned: map[string]any{"age": max(0, s.now().UnixMilli()-ev.OriginServerTS())},
	}
}

// clientEvent formats a stored event for the viewer v: unsigned carries
// age, for state events the content it replaced, and what decorate adds.
func (s *Service) clientEvent(tx *store.Tx, v *view, rec *store.StoredEvent) (*ClientEvent, error) {
	version := v.room.Version
	ev, err := parseRec(version, rec)
	if err != nil {
		return nil, err
	}
	ce := s.newClientEvent(ev)
	if ev.IsState() && rec.StateBefore != 0 {
		before, err := tx.StateAt(rec.StateBefore)
		if err != nil {
			return nil, err
		}
		if p, ok := before[store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}]; ok {
			prev, err := tx.Event(p)
			if err == nil {
				if pe, err := parseRec(version, prev); err == nil {
					ce.Unsigned["prev_content"] = json.RawMessage(pe.Content())
					ce.Unsigned["replaces_state"] = pe.ID()
					ce.Unsigned["prev_sender"] = pe.Sender()
				}
			}
		}
	}
	if v.rd != nil {
		// The viewer's membership at the event (spec v1.11, MSC4115).
		m := "leave"
		if ev.Type() == "m.room.member" && ev.StateKeyIs(v.rd.userID) {
			m, _ = ev.Membership()
		} else if at, err := v.rd.at(rec.StateBefore); err != nil {
			return nil, err
		} else if at.membership != "" {
			m = at.membership
		}
		ce.Unsigned["membership"] = m
	}
	if err := s.decorate(tx, v, rec, ev, ce, decorateFull); err != nil {
		return nil, err
	}
	return ce, nil
}

// view is what one user may read of a room: the room state while joined
// (or, after leaving, as it was when they left; or the current state of a
// world-readable room), and timeline events as the reader allows.
type view struct {
	room  *store.Room
	until uint64 // 0: current state; else the user's last member event
	rd    *reader
	// device is the requesting device ("" if unknown): its own sends carry
	// unsigned.transaction_id.
	device string
}

// visible reports whether the viewer may see a timeline event.
func (v *view) visible(rec *store.StoredEvent) (bool, error) { return v.rd.visible(rec) }

// viewFor returns what userID may read of roomID. Someone who was never in
// the room may read it only while it is world_readable; otherwise, and for
// an unknown room, M_FORBIDDEN, which does not tell whether it exists.
func (s *Service) viewFor(tx *store.Tx, userID, roomID string) (*view, error) {
	room, err := tx.RoomByID(roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.Forbidden("You are not a member of this room")
	}
	if err != nil {
		return nil, err
	}
	m, err := tx.MembershipOf(userID, room.NID)
	if errors.Is(err, store.ErrNotFound) {
		m, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if m != nil && m.Forgotten {
		return nil, mxerr.Forbidden("You have forgotten this room")
	}
	rd, err := newReader(tx, room, userID, m)
	if err != nil {
		return nil, err
	}
	v := &view{room: room, rd: rd}
	switch {
	case m != nil && m.Membership == "join":
		return v, nil
	case m != nil && (m.Membership == "leave" || m.Membership == "ban") && rd.joinedLate != 0:
		v.until = m.Pos
		return v, nil
	}
	var hv struct {
		V string `json:"history_visibility"`
	}
	if err := s.stateContent(tx, room, "m.room.history_visibility", "", &hv); err != nil {
		return nil, err
	}
	if hv.V == "world_readable" {
		return v, nil
	}
	if m != nil && m.Membership != "" && m.Membership != "leave" && m.Membership != "ban" {
		// Invited or knocking: the timeline as the reader allows, no state.
		v.until = m.Pos
		return v, nil
	}
	return nil, mxerr.Forbidden("You are not a member of this room")
}

// stateOf returns the state a view sees: current while joined (or in a
// world-readable room), else the state right after the user's own leave.
// Invitees and knockers see no state here.
func (s *Service) stateOf(tx *store.Tx, v *view) (map[store.StateKey]uint64, error) {
	if v.until == 0 {
		return tx.CurrentState(v.room.NID, "")
	}
	rec, err := tx.Event(v.until)
	if err != nil {
		return nil, err
	}
	ev, err := pdu.ParseStored(v.room.Version, rec.JSON, false, rec.ID)
	if err != nil {
		return nil, err
	}
	if m, _ := ev.Membership(); m != "leave" && m != "ban" {
		return nil, mxerr.Forbidden("You are not a member of this room")
	}
	st, err := tx.StateAt(rec.StateBefore)
	if err != nil {
		return nil, err
	}
	st[store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}] = rec.Pos
	return st, nil
}

// State returns the room state userID may see, in client format.
func (s *Service) State(userID, roomID string) ([]*ClientEvent, error) {
	var out []*ClientEvent
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		st, err := s.stateOf(tx, v)
		if err != nil {
			return err
		}
		out = make([]*ClientEvent, 0, len(st))
		for _, pos := range st {
			ce, err := s.clientEventAt(tx, v, pos)
			if err != nil {
				return err
			}
			out = append(out, ce)
		}
		return nil
	})
	return out, err
}

// StateEvent returns one state event userID may see, or M_NOT_FOUND.
func (s *Service) StateEvent(userID, roomID, typ, key string) (*ClientEvent, error) {
	var out *ClientEvent
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		st, err := s.stateOf(tx, v)
		if err != nil {
			return err
		}
		pos, ok := st[store.StateKey{Type: typ, Key: key}]
		if !ok {
			return mxerr.NotFound("Event not found")
		}
		out, err = s.clientEventAt(tx, v, pos)
		return err
	})
	return out, err
}

// Event returns one event of a room that userID may see, or M_NOT_FOUND.
func (s *Service) Event(userID, deviceID, roomID, eventID string) (*ClientEvent, error) {
	var out *ClientEvent
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" {
			return mxerr.NotFound("Event not found") // as for an event they may not see
		}
		if err != nil {
			return err
		}
		v.device = deviceID
		rec, err := s.visibleEvent(tx, v, eventID)
		if err != nil {
			return err
		}
		out, err = s.clientEvent(tx, v, rec)
		return err
	})
	return out, err
}

// Page is one page of /messages.
type Page struct {
	Chunk []*ClientEvent `json:"chunk"`
	Start string         `json:"start"`
	End   string         `json:"end,omitempty"`
	State []*ClientEvent `json:"state,omitempty"`
}

// Topological tokens of /messages read "t<depth>_<pos>".
func topoToken(t *store.TopoToken) string {
	return fmt.Sprintf("t%d_%d", t.Depth, t.Pos)
}

func parseTopoToken(s string) (*store.TopoToken, error) {
	d, p, ok := strings.Cut(strings.TrimPrefix(s, "t"), "_")
	depth, err1 := strconv.ParseInt(d, 10, 64)
	pos, err2 := strconv.ParseUint(p, 10, 64)
	if !ok || !strings.HasPrefix(s, "t") || err1 != nil || err2 != nil || depth < 0 {
		return nil, mxerr.InvalidParam("Invalid pagination token")
	}
	return &store.TopoToken{Depth: depth, Pos: pos}, nil
}

// syncTokenPos reads the stream position of a sync token "s<pos>_...".
func syncTokenPos(tok string) (uint64, bool) {
	first, _, _ := strings.Cut(tok, "_")
	pos, err := strconv.ParseUint(strings.TrimPrefix(first, "s"), 10, 64)
	return pos, strings.HasPrefix(first, "s") && err == nil
}

// tokenPos reads a stream position from either kind of token.
func tokenPos(tok string) (uint64, error) {
	if pos, ok := syncTokenPos(tok); ok {
		return pos, nil
	}
	t, err := parseTopoToken(tok)
	if err != nil {
		return 0, err
	}
	return t.Pos, nil
}

// pageToken reads a pagination token for a room: the topological
// "t<depth>_<pos>" of /messages, or a sync token (a sync's prev_batch or
// next_batch, which clients may page from), which stands for the room as
// it was at that stream position. nil means the start of the room.
func (s *Service) pageToken(tx *store.Tx, room *store.Room, tok string, backward bool) (*store.TopoToken, error) {
	pos, isSync := syncTokenPos(tok)
	if !isSync {
		return parseTopoToken(tok)
	}
	last, err := tx.LastRoomEvent(room.NID, pos)
	if errors.Is(err, store.ErrNotFound) {
		if backward {
			return &store.TopoToken{}, nil // nothing before
		}
		return nil, nil // everything after
	}
	if err != nil {
		return nil, err
	}
	ev, err := s.eventAt(tx, room.Version, last.Pos)
	if err != nil {
		return nil, err
	}
	t := &store.TopoToken{Depth: ev.Depth(), Pos: last.Pos}
	if backward {
		t.Pos++ // the event at the token is before it, and included
	}
	return t, nil
}

// MessagesQuery is a /messages request.
type MessagesQuery struct {
	From, To string // tokens; "" for the end the direction starts from, and no stop
	Backward bool
	Limit    int
	Filter   *filter.RoomEvent
	DeviceID string // the requesting device, shown its own transaction IDs
}

// Messages pages through a room's timeline in topological order, as far
// as userID may see. End is omitted when there is nothing further and
// the page is empty (a page with events has one, as Synapse's have).
// With lazy_load_members, State holds the member events of the
// chunk's senders.
//
// Paging back from a sync token (a sync's prev_batch) gives the events
// before it topologically, leaving out those /sync delivers after it:
// events that came late from another server sort before events we had
// earlier, and must not hide them.
//
// Paging back across a gap in the timeline (history we never had, such
// as what came before we joined) fetches it from the room's other
// servers first, as often as it takes to fill the page or until they
// have nothing more, within backfillTimeout.
func (s *Service) Messages(userID, roomID string, q MessagesQuery) (*Page, error) {
	for _, tok := range []string{q.From, q.To} {
		if tok != "" {
			if _, ok := syncTokenPos(tok); !ok {
				if _, err := parseTopoToken(tok); err != nil {
					return nil, err
				}
			}
		}
	}
	deadline := s.now().Add(backfillTimeout)
	for {
		page, gaps, err := s.messagesPage(userID, roomID, q)
		if err != nil || len(gaps) == 0 || s.remote == nil || !s.now().Before(deadline) {
			return page, err
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		added, err := s.backfill(ctx, roomID, gaps)
		cancel()
		if err != nil {
			s.log.Info("federation: backfill", "room", roomID, "err", err)
		}
		if !added {
			return page, nil
		}
	}
}

// maxGapsPerBackfill bounds the gaps one backfill request starts from.
const maxGapsPerBackfill = 5

// messagesPage reads one page of /messages from what we have, and for a
// backward page returns the unfilled gaps in the stretch it covered
// (between its start and its last event, or the room's start when it
// reached that): the history there is incomplete.
func (s *Service) messagesPage(userID, roomID string, q MessagesQuery) (*Page, []store.TopoToken, error) {
	var cursor, stop *store.TopoToken
	dir := store.Forward
	if q.Backward {
		dir = store.Backward
	}
	beyond := func(t store.TopoToken) bool {
		if stop == nil {
			return false
		}
		if q.Backward {
			return t.Depth < stop.Depth || t.Depth == stop.Depth && t.Pos < stop.Pos
		}
		return t.Depth > stop.Depth || t.Depth == stop.Depth && t.Pos > stop.Pos
	}
	// upto leaves out the live events after a sync token paged back from.
	upto := ^uint64(0)
	high := int64(math.MaxInt64) // the depth the page starts below
	page := &Page{Chunk: []*ClientEvent{}, Start: q.From}
	var gaps []store.TopoToken
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		v.device = q.DeviceID
		if pos, isSync := syncTokenPos(q.From); isSync && q.Backward {
			upto = pos
		} else if q.From != "" {
			if cursor, err = s.pageToken(tx, v.room, q.From, q.Backward); err != nil {
				return err
			}
			high = cursor.Depth
		}
		if q.To != "" {
			if stop, err = s.pageToken(tx, v.room, q.To, !q.Backward); err != nil {
				return err
			}
		}
		// low is the depth the page reached down to: 0 at the room's start.
		low := int64(0)
		defer func() {
			if q.Backward {
				gaps = s.gapsIn(tx, v.room, low, high)
			}
		}()
		for len(page.Chunk) < q.Limit {
			entries, err := tx.TimelineUpto(v.room.NID, cursor, dir, q.Limit-len(page.Chunk), upto)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				// The start (or end) of the room. A page that has events
				// still gets an end token, as Synapse gives one: paging on
				// from it returns none, and no end.
				if len(page.Chunk) > 0 {
					page.End = topoToken(cursor)
				}
				return s.lazyMembers(tx, v, q.Filter, page)
			}
			for i, e := range entries {
				if beyond(e.Token) {
					low = stop.Depth
					return s.lazyMembers(tx, v, q.Filter, page)
				}
				if page.Start == "" && i == 0 {
					// A token just outside the first event, so that paging
					// from it in the same direction gives this page again.
					t := e.Token
					if q.Backward {
						t.Pos++
					} else if t.Pos > 0 {
						t.Pos--
					}
					page.Start = topoToken(&t)
				}
				cursor = &entries[i].Token
				ce, err := s.shown(tx, v, e.Event, q.Filter)
				if err != nil {
					return err
				}
				if ce != nil {
					page.Chunk = append(page.Chunk, ce)
				}
			}
		}
		more, err := tx.TimelineUpto(v.room.NID, cursor, dir, 1, upto)
		if err != nil {
			return err
		}
		if len(more) > 0 && !beyond(more[0].Token) {
			page.End = topoToken(cursor)
			low = cursor.Depth
		}
		return s.lazyMembers(tx, v, q.Filter, page)
	})
	if err != nil {
		return nil, nil, err
	}
	if page.Start == "" {
		page.Start = "t0_0"
	}
	return page, gaps, nil
}

// gapsIn returns the unfilled gaps of a room's timeline whose event's
// depth is in [low, high], deepest first. A room joined before the store
// kept backfill points has none recorded; its gap is at its first event,
// found when paging reaches it (low 0).
func (s *Service) gapsIn(tx *store.Tx, room *store.Room, low, high int64) []store.TopoToken {
	gaps := tx.BackfillPoints(room.NID, low, high, maxGapsPerBackfill)
	if len(gaps) > 0 || low > 0 {
		return gaps
	}
	first, err := tx.Timeline(room.NID, nil, store.Forward, 1)
	if err != nil || len(first) == 0 || first[0].Token.Depth > high {
		return nil
	}
	ev, err := s.heads.event(tx, room.Version, first[0].Token.Pos)
	if err != nil || len(tx.GapPrevs(ev.PrevEventIDs())) == 0 {
		return nil
	}
	return []store.TopoToken{first[0].Token}
}

// lazyMembers fills page.State with the member events of the chunk's
// senders, when the filter asks for lazy-loaded members.
func (s *Service) lazyMembers(tx *store.Tx, v *view, f *filter.RoomEvent, page *Page) error {
	if f == nil || !f.LazyLoadMembers || len(page.Chunk) == 0 {
		return nil
	}
	st, err := s.stateOf(tx, v)
	if err != nil {
		return nil // no state to offer (an invitee): the chunk stands alone
	}
	seen := map[string]bool{}
	for _, ce := range page.Chunk {
		if seen[ce.Sender] {
			continue
		}
		seen[ce.Sender] = true
		pos, ok := st[store.StateKey{Type: "m.room.member", Key: ce.Sender}]
		if !ok {
			continue
		}
		me, err := s.clientEventAt(tx, v, pos)
		if err != nil {
			return err
		}
		page.State = append(page.State, me)
	}
	return nil
}

// JoinedRooms returns the IDs of the rooms userID is joined to.
func (s *Service) JoinedRooms(userID string) ([]string, error) {
	out := []string{}
	err := s.store.View(func(tx *store.Tx) error {
		rooms, err := joinedRooms(tx, userID)
		for _, r := range rooms {
			out = append(out, r.RoomID)
		}
		return err
	})
	return out, err
}

// joinedRooms returns the rooms userID is joined to.
func joinedRooms(tx *store.Tx, userID string) ([]*store.Room, error) {
	ms, err := tx.Memberships(userID)
	if err != nil {
		return nil, err
	}
	var out []*store.Room
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		r, err := tx.RoomByNID(m.RoomNID)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// shown formats rec for the viewer when they may see it and it passes f,
// and returns nil otherwise.
func (s *Service) shown(tx *store.Tx, v *view, rec *store.StoredEvent, f *filter.RoomEvent) (*ClientEvent, error) {
	if ok, err := v.visible(rec); err != nil || !ok {
		return nil, err
	}
	ce, err := s.clientEvent(tx, v, rec)
	if err != nil || !f.Match(ce.RoomID, ce.Type, ce.Sender, ce.Content) {
		return nil, err
	}
	return ce, nil
}

// clientEventAt formats the event at a position for a viewer.
func (s *Service) clientEventAt(tx *store.Tx, v *view, pos uint64) (*ClientEvent, error) {
	rec, err := tx.Event(pos)
	if err != nil {
		return nil, err
	}
	return s.clientEvent(tx, v, rec)
}

// servableEvent returns a stored event by ID for a client, or
// store.ErrNotFound for one that must never be served: rejected or
// soft-failed.
func servableEvent(tx *store.Tx, eventID string) (*store.StoredEvent, error) {
	rec, err := tx.EventByID(eventID)
	if err == nil && rec.Hidden() {
		return nil, store.ErrNotFound
	}
	return rec, err
}
