package rooms

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"

	"hearth/server/filter"
	"hearth/server/pdu"
	"hearth/store"
)

// SyncRequest asks for what changed in a user's rooms between two stream
// positions.
type SyncRequest struct {
	UserID, DeviceID string
	Since            uint64 // 0 for an initial sync
	Upto             uint64 // the position the response is consistent with
	FullState        bool
	TimelineLimit    int
	Timeline         *filter.RoomEvent // nil for all
	State            *filter.RoomEvent // room.state: which state events
	Ephemeral        *filter.RoomEvent // room.ephemeral: which ephemeral events
	IncludeLeave     bool              // left rooms on an initial sync too
	LazyMembers      bool              // state: only the members the timeline needs
	RoomAllowed      func(roomID string) bool
	// ThreadCounts splits unread counts by thread
	// (unread_thread_notifications).
	ThreadCounts bool
	// Sent remembers which member events this device was already sent,
	// so lazy loading sends each once per connection (unless the filter
	// wants redundant members); nil sends them every time.
	Sent *MemberCache
	// Ignored are the users in the user's m.ignored_user_list: their
	// non-state events and their invites are not sent (spec: "Ignoring
	// Users").
	Ignored map[string]bool
}

// SyncRooms is the "rooms" section of a sync response.
type SyncRooms struct {
	Join   map[string]*JoinedRoom   `json:"join,omitempty"`
	Invite map[string]*StrippedRoom `json:"invite,omitempty"`
	Leave  map[string]*LeftRoom     `json:"leave,omitempty"`
	Knock  map[string]*StrippedRoom `json:"knock,omitempty"`
}

// Empty reports whether nothing changed in any room.
func (r *SyncRooms) Empty() bool {
	return len(r.Join) == 0 && len(r.Invite) == 0 && len(r.Leave) == 0 && len(r.Knock) == 0
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []*ClientEvent `json:"events"`
	Limited   bool           `json:"limited"`
	PrevBatch string         `json:"prev_batch,omitempty"`
}

// EventList is a section holding a list of events.
type EventList struct {
	Events []*ClientEvent `json:"events"`
}

// RoomSummary is the spec's room summary of a joined room.
type RoomSummary struct {
	Heroes  []string `json:"m.heroes,omitempty"`
	Joined  int      `json:"m.joined_member_count"`
	Invited int      `json:"m.invited_member_count"`
}

// JoinedRoom is one room of rooms.join.
type JoinedRoom struct {
	Timeline    Timeline   `json:"timeline"`
	State       EventList  `json:"state"`
	AccountData *RawEvents `json:"account_data,omitempty"`
	Ephemeral   *RawEvents `json:"ephemeral,omitempty"`
	Unread      *Unread    `json:"unread_notifications,omitempty"`
	// UnreadThreads are the per-thread counts, when the filter asks for
	// unread_thread_notifications (Unread then counts the main timeline).
	UnreadThreads map[string]Unread `json:"unread_thread_notifications,omitempty"`
	Summary       *RoomSummary      `json:"summary,omitempty"`
}

// Unread is a joined room's unread notification counts.
type Unread struct {
	Highlights    int `json:"highlight_count"`
	Notifications int `json:"notification_count"`
}

// RawEvent is an event with only a type and content (account data,
// ephemeral events).
type RawEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// RawEvents is a sync section of RawEvents.
type RawEvents struct {
	Events []RawEvent `json:"events"`
}

// LeftRoom is one room of rooms.leave.
type LeftRoom struct {
	Timeline Timeline  `json:"timeline"`
	State    EventList `json:"state"`
}

// StrippedRoom is one room of rooms.invite (invite_state) or rooms.knock
// (knock_state).
type StrippedRoom struct {
	InviteState *StrippedList `json:"invite_state,omitempty"`
	KnockState  *StrippedList `json:"knock_state,omitempty"`
}

// StrippedList holds stripped state events.
type StrippedList struct {
	Events []StrippedEvent `json:"events"`
}

// strippedTypes is the state an invitee or knocker is shown, the spec's
// recommended list.
var strippedTypes = []string{
	"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic",
}

// Sync returns what changed in req.UserID's rooms in (Since, Upto]: for
// joined rooms the newest events (limited, with a prev_batch that
// /messages accepts, when more happened), and the state: all of it when
// the room is new to the client, else the change across a gap; invites
// and knocks as stripped state; rooms left since as their timeline up to
// the leave.
func (s *Service) Sync(req *SyncRequest) (*SyncRooms, error) {
	out := &SyncRooms{}
	err := s.store.View(func(tx *store.Tx) error {
		ms, err := tx.Memberships(req.UserID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			// A forgotten room is gone from initial syncs, but its leave
			// still reaches a sync from before it, so the user's other
			// devices learn of it.
			if m.Forgotten && (req.Since == 0 || m.Pos <= req.Since) || m.Pos > req.Upto {
				continue
			}
			room, err := tx.RoomByNID(m.RoomNID)
			if err != nil {
				return err
			}
			if req.RoomAllowed != nil && !req.RoomAllowed(room.RoomID) {
				continue
			}
			changed := m.Pos > req.Since
			switch m.Membership {
			case "join":
				jr, err := s.syncJoined(tx, req, room, changed)
				if err != nil {
					return err
				}
				if jr != nil {
					if out.Join == nil {
						out.Join = map[string]*JoinedRoom{}
					}
					out.Join[room.RoomID] = jr
				}
			case "invite", "knock":
				if !changed && req.Since != 0 {
					continue
				}
				if m.Membership == "invite" && len(req.Ignored) > 0 {
					if inv, err := s.eventAt(tx, room.Version, m.Pos); err == nil && req.Ignored[inv.Sender()] {
						continue
					}
				}
				list, err := s.strippedState(tx, room, m.Pos)
				if err != nil {
					return err
				}
				sr := &StrippedRoom{}
				if m.Membership == "invite" {
					sr.InviteState = list
					if out.Invite == nil {
						out.Invite = map[string]*StrippedRoom{}
					}
					out.Invite[room.RoomID] = sr
				} else {
					sr.KnockState = list
					if out.Knock == nil {
						out.Knock = map[string]*StrippedRoom{}
					}
					out.Knock[room.RoomID] = sr
				}
			case "leave", "ban":
				if !(changed && req.Since != 0 || req.Since == 0 && req.IncludeLeave) {
					continue
				}
				lr, err := s.syncLeft(tx, req, room, m)
				if err != nil {
					return err
				}
				if lr != nil {
					if out.Leave == nil {
						out.Leave = map[string]*LeftRoom{}
					}
					out.Leave[room.RoomID] = lr
				}
			}
		}
		return nil
	})
	return out, err
}

func (s *Service) syncJoined(tx *store.Tx, req *SyncRequest, room *store.Room, joinedSince bool) (*JoinedRoom, error) {
	since := req.Since
	if joinedSince {
		since = 0 // new to the client: everything, as on an initial sync
	}
	receipt, err := receiptEvent(tx, room, req.UserID, since, req.Upto)
	if err != nil {
		return nil, err
	}
	if since != 0 && !req.FullState && receipt == nil && !tx.RoomActiveSince(room.NID, since, req.Upto) {
		return nil, nil
	}
	v, err := s.viewFor(tx, req.UserID, room.RoomID)
	if err != nil {
		return nil, err
	}
	v.device = req.DeviceID
	tl, first, err := s.syncTimeline(tx, v, req, room, since, req.Upto)
	if err != nil {
		return nil, err
	}
	jr := &JoinedRoom{Timeline: *tl, Ephemeral: &RawEvents{Events: []RawEvent{}}}
	if since == 0 || hasMemberChange(tl.Events) {
		if jr.Summary, err = s.summary(tx, room, req.UserID); err != nil {
			return nil, err
		}
	}
	var heroes []string
	if jr.Summary != nil {
		heroes = jr.Summary.Heroes
	}
	if jr.State.Events, err = s.syncState(tx, v, req, room, since, first, tl, heroes...); err != nil {
		return nil, err
	}
	if receipt != nil && req.Ephemeral.Match(room.RoomID, receipt.Type, "", receipt.Content) {
		jr.Ephemeral = &RawEvents{Events: []RawEvent{*receipt}}
	}
	jr.Unread = &Unread{}
	if req.ThreadCounts {
		by, err := s.Unread.UnreadByThread(tx, room, req.UserID, req.Upto)
		if err != nil {
			return nil, err
		}
		*jr.Unread = by[""]
		delete(by, "")
		if len(by) > 0 {
			jr.UnreadThreads = by
		}
	} else if jr.Unread.Notifications, jr.Unread.Highlights, err = s.Unread.Unread(tx, room, req.UserID, req.Upto); err != nil {
		return nil, err
	}
	return jr, nil
}

func (s *Service) syncLeft(tx *store.Tx, req *SyncRequest, room *store.Room, m store.Membership) (*LeftRoom, error) {
	v, err := s.viewFor(tx, req.UserID, room.RoomID)
	if err != nil {
		// Never joined (a rejected or withdrawn invite, a kicked knock):
		// the client is shown its own leave, so it drops the invite.
		rd, err := newReader(tx, room, req.UserID, &m)
		if err != nil {
			return nil, err
		}
		ce, err := s.clientEventAt(tx, &view{room: room, until: m.Pos, rd: rd, device: req.DeviceID}, m.Pos)
		if err != nil {
			return nil, err
		}
		return &LeftRoom{Timeline: Timeline{Events: []*ClientEvent{ce}}, State: EventList{Events: []*ClientEvent{}}}, nil
	}
	v.device = req.DeviceID
	since := req.Since
	tl, first, err := s.syncTimeline(tx, v, req, room, since, m.Pos)
	if err != nil {
		return nil, err
	}
	lr := &LeftRoom{Timeline: *tl}
	if lr.State.Events, err = s.syncState(tx, v, req, room, since, first, tl); err != nil {
		return nil, err
	}
	return lr, nil
}

// syncTimeline returns the newest visible events of a room in (since,
// upto] and the stored form of the first of them. Where the room's
// timeline has a gap in that window (events came whose prev events we
// never got), it starts after the gap and is limited, as Synapse does:
// the client pages back into the gap from prev_batch, which backfills it,
// instead of taking the events on either side for one unbroken stretch.
func (s *Service) syncTimeline(tx *store.Tx, v *view, req *SyncRequest, room *store.Room, since, upto uint64) (*Timeline, *store.StoredEvent, error) {
	limit := max(req.TimelineLimit, 0)
	gap := false
	if since != 0 {
		if pos, ok := tx.LastStreamGap(room.NID, since, upto); ok {
			since, gap = pos-1, true
		}
	}
	recs, limited, err := tx.RoomStream(room.NID, since, upto, limit)
	if err != nil {
		return nil, nil, err
	}
	tl := &Timeline{Events: []*ClientEvent{}, Limited: limited || gap}
	var first *store.StoredEvent
	for _, rec := range recs {
		ce, err := s.shown(tx, v, rec, req.Timeline)
		if err != nil {
			return nil, nil, err
		}
		if ce == nil || ce.StateKey == nil && req.Ignored[ce.Sender] {
			continue
		}
		if first == nil {
			first = rec
		}
		tl.Events = append(tl.Events, ce)
	}
	if len(recs) > 0 {
		// The stream position right before the first event: /messages
		// pages back from there through what came before it in the
		// topological order, which events that arrived late from another
		// server must not cut short (see Messages).
		tl.PrevBatch = "s" + strconv.FormatUint(recs[0].Pos-1, 10)
		if since == 0 && !tl.Limited {
			// The room's whole timeline, to a client new to it: the
			// sync's own position, as Synapse's prev_batch is when it
			// trimmed nothing. /members?at=prev_batch is then the room as
			// the client was shown it (Complement's
			// TestGetRoomMembersAtPoint), not as it was before its first
			// event; paging back from it gives the timeline again, then
			// the room's start.
			tl.PrevBatch = "s" + strconv.FormatUint(upto, 10)
		}
		if first == nil {
			first = recs[0]
		}
	} else if tl.Limited {
		// An empty timeline (limit 0) that left events out: /messages
		// pages back from the end of the window.
		tl.PrevBatch = "s" + strconv.FormatUint(upto, 10)
	}
	return tl, first, nil
}

// syncState returns the state section: the whole state at the start of
// the timeline when since is 0 (or full_state), else the state that
// changed across the gap of a limited timeline. With lazy-loaded members,
// the member events are those of the timeline's senders and of heroes
// (the summary's, which the spec has sent with it).
func (s *Service) syncState(tx *store.Tx, v *view, req *SyncRequest, room *store.Room, since uint64, first *store.StoredEvent, tl *Timeline, heroes ...string) ([]*ClientEvent, error) {
	var atStart map[store.StateKey]uint64
	var err error
	if first != nil {
		atStart, err = tx.StateAt(first.StateBefore)
	} else if v.until != 0 {
		atStart, err = s.stateOf(tx, v)
	} else {
		atStart, err = tx.CurrentState(room.NID, "")
	}
	if err != nil {
		return nil, err
	}
	var before map[store.StateKey]uint64
	onlyLazy := false // nothing but lazy-loaded members
	switch {
	case since == 0 || req.FullState:
		before = nil // everything
	case !tl.Limited:
		onlyLazy = true // the timeline holds every change
	default:
		last, err := tx.LastRoomEvent(room.NID, since)
		if err == nil {
			ev, perr := pdu.ParseStored(room.Version, last.JSON, false, last.ID)
			if perr != nil {
				return nil, perr
			}
			var sk *store.StateKey
			if ev.IsState() {
				sk = &store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}
			}
			if before, err = tx.StateAfter(last, sk); err != nil {
				return nil, err
			}
		}
	}
	if onlyLazy && !req.LazyMembers {
		return []*ClientEvent{}, nil
	}
	needed := map[string]bool{}
	if req.LazyMembers {
		for _, ce := range tl.Events {
			needed[ce.Sender] = true
		}
		for _, h := range heroes {
			needed[h] = true
		}
		needed[req.UserID] = true
	}
	out := []*ClientEvent{}
	for sk, pos := range atStart {
		if req.LazyMembers && sk.Type == "m.room.member" {
			// The timeline's senders, whether or not they changed, unless
			// this connection already has that member event.
			if !needed[sk.Key] || req.Sent.Seen(room.RoomID, sk.Key, pos) {
				continue
			}
		} else if onlyLazy || before != nil && before[sk] == pos {
			continue
		}
		ce, err := s.clientEventAt(tx, v, pos)
		if err != nil {
			return nil, err
		}
		// With lazy-loaded members, the user's own membership is sent
		// whatever the state filter, as Synapse sends it; otherwise the
		// filter decides, for it as for any event.
		own := req.LazyMembers && sk.Type == "m.room.member" && sk.Key == req.UserID
		if !own && (sk.Type != "m.room.member" || !req.LazyMembers) {
			if !req.State.Match(room.RoomID, ce.Type, ce.Sender, ce.Content) {
				continue
			}
		}
		out = append(out, ce)
	}
	slices.SortFunc(out, func(a, b *ClientEvent) int {
		return strings.Compare(a.Type+"\x00"+*a.StateKey, b.Type+"\x00"+*b.StateKey)
	})
	return out, nil
}

func hasMemberChange(evs []*ClientEvent) bool {
	for _, e := range evs {
		if e.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// summary returns a joined room's member counts and, when it has no name
// or canonical alias, its heroes as userID sees them.
func (s *Service) summary(tx *store.Tx, room *store.Room, userID string) (*RoomSummary, error) {
	st, err := tx.CurrentState(room.NID, "m.room.member")
	if err != nil {
		return nil, err
	}
	members, err := s.membersIn(tx, st)
	if err != nil {
		return nil, err
	}
	sum := &RoomSummary{}
	for _, m := range members {
		switch m.membership {
		case "join":
			sum.Joined++
		case "invite":
			sum.Invited++
		}
	}
	named := map[store.StateKey]uint64{}
	for _, sk := range []store.StateKey{{Type: "m.room.name"}, {Type: "m.room.canonical_alias"}} {
		if pos, err := tx.CurrentStateEvent(room.NID, sk); err == nil {
			named[sk] = pos
		}
	}
	byHeroes, err := s.namedByHeroes(tx, room, named)
	if err != nil {
		return nil, err
	}
	if byHeroes {
		sum.Heroes = heroes(members, userID)
	}
	return sum, nil
}

// strippedState returns what an invitee or knocker sees of a room: the
// recommended state events as they were at their membership event, and
// the membership event itself.
func (s *Service) strippedState(tx *store.Tx, room *store.Room, memberPos uint64) (*StrippedList, error) {
	rec, err := tx.Event(memberPos)
	if err != nil {
		return nil, err
	}
	if rec.Flags&store.FlagOutlier != 0 {
		// A remote invite: the state its server sent with it.
		list := &StrippedList{Events: inviteState(rec.JSON)}
		ev, err := s.eventAt(tx, room.Version, memberPos)
		if err != nil {
			return nil, err
		}
		list.Events = append(list.Events, StrippedEvent{Type: ev.Type(), StateKey: *ev.StateKey(), Content: ev.Content(), Sender: ev.Sender(), OriginServerTS: ev.OriginServerTS()})
		return list, nil
	}
	st, err := tx.StateAt(rec.StateBefore)
	if err != nil {
		return nil, err
	}
	list := &StrippedList{Events: []StrippedEvent{}}
	add := func(pos uint64) error {
		ev, err := s.eventAt(tx, room.Version, pos)
		if err != nil {
			return err
		}
		list.Events = append(list.Events, StrippedEvent{Type: ev.Type(), StateKey: *ev.StateKey(), Content: ev.Content(), Sender: ev.Sender(), OriginServerTS: ev.OriginServerTS()})
		return nil
	}
	for _, typ := range strippedTypes {
		if pos, ok := st[store.StateKey{Type: typ}]; ok {
			if err := add(pos); err != nil {
				return nil, err
			}
		}
	}
	return list, add(memberPos)
}

// MemberCache remembers, for one device's sync connection, which member
// event of each room member it was sent.
type MemberCache struct {
	mu   sync.Mutex                   // guards sent
	sent map[string]map[string]uint64 // room → user → member event position
}

// NewMemberCache returns an empty cache.
func NewMemberCache() *MemberCache {
	return &MemberCache{sent: map[string]map[string]uint64{}}
}

// Seen reports whether this member event was already sent, and records
// it as sent. A nil cache has seen nothing.
func (c *MemberCache) Seen(roomID, userID string, pos uint64) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.sent[roomID]
	if room == nil {
		room = map[string]uint64{}
		c.sent[roomID] = room
	}
	if room[userID] == pos {
		return true
	}
	room[userID] = pos
	return false
}
