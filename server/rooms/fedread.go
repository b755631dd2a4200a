package rooms

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Federation reads: what another server may fetch of a room's history
// (/event, /state, /state_ids, /event_auth, /backfill,
// /get_missing_events). A server may see an event when one of its users
// was joined at it (their own join included), when the room's history
// was world_readable then, when it was shared and the server is in the
// room now, or when it was invited-only and one of its users was invited.
// Rejected and soft-failed events are never served.

// Limits of the federation history reads.
const (
	maxBackfill           = 100
	defaultMissingEvents  = 10
	maxServeMissingEvents = 20
)

// fedReader decides what one server may see of one room, inside one
// read transaction.
type fedReader struct {
	s      *Service
	tx     *store.Tx
	room   *store.Room
	origin string
	now    serverView // in the current state
	snaps  map[uint64]serverView
}

// serverView is the history visibility of a room state and whether the
// reading server has a joined or an invited user in it.
type serverView struct {
	visibility      string
	joined, invited bool
}

func (s *Service) newFedReader(tx *store.Tx, room *store.Room, origin string) (*fedReader, error) {
	if err := s.checkACL(tx, room, origin); err != nil {
		return nil, err
	}
	fr := &fedReader{s: s, tx: tx, room: room, origin: origin, snaps: map[uint64]serverView{}}
	cur, err := tx.CurrentState(room.NID, "")
	if err != nil {
		return nil, err
	}
	fr.now, err = fr.view(cur)
	return fr, err
}

// fedReaderOf is newFedReader for a room ID: M_NOT_FOUND for a room we do
// not know.
func (s *Service) fedReaderOf(tx *store.Tx, roomID, origin string) (*fedReader, error) {
	room, err := knownRoom(tx, roomID)
	if err != nil {
		return nil, err
	}
	return s.newFedReader(tx, room, origin)
}

func (fr *fedReader) view(st map[store.StateKey]uint64) (serverView, error) {
	v := serverView{visibility: "shared"}
	if pos, ok := st[store.StateKey{Type: "m.room.history_visibility"}]; ok {
		ev, err := fr.s.heads.event(fr.tx, fr.room.Version, pos)
		if err != nil {
			return v, err
		}
		var c struct {
			V string `json:"history_visibility"`
		}
		if json.Unmarshal(ev.Content(), &c) == nil && c.V != "" {
			v.visibility = c.V
		}
	}
	for sk, pos := range st {
		if sk.Type != "m.room.member" || serverOf(sk.Key) != fr.origin {
			continue
		}
		ev, err := fr.s.heads.event(fr.tx, fr.room.Version, pos)
		if err != nil {
			return v, err
		}
		switch m, _ := ev.Membership(); m {
		case "join":
			v.joined = true
		case "invite":
			v.invited = true
		}
	}
	return v, nil
}

func (fr *fedReader) at(snap uint64) (serverView, error) {
	if v, ok := fr.snaps[snap]; ok {
		return v, nil
	}
	st, err := fr.tx.StateAt(snap)
	if err != nil {
		return serverView{}, err
	}
	v, err := fr.view(st)
	if err == nil {
		fr.snaps[snap] = v
	}
	return v, err
}

// find returns a servable event of the room, or nil when we do not have
// it, it is of another room, or it is rejected or soft-failed.
func (fr *fedReader) find(eventID string) (*loaded, error) {
	pos, err := fr.tx.EventPos(eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return fr.findPos(pos)
}

func (fr *fedReader) findPos(pos uint64) (*loaded, error) {
	rec, err := fr.tx.Event(pos)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.RoomNID != fr.room.NID || rec.Hidden() {
		return nil, nil
	}
	ev, err := fr.s.heads.event(fr.tx, fr.room.Version, pos)
	if err != nil {
		return nil, err
	}
	return &loaded{rec: rec, ev: ev}, nil
}

// stateUnknown reports whether we do not know the state before an event:
// an outlier learnt without it (the create event's is the empty state).
func stateUnknown(l *loaded) bool {
	return l.rec.Flags&store.FlagOutlier != 0 && l.rec.StateBefore == 0 &&
		!(l.ev.Type() == "m.room.create" && l.ev.StateKeyIs(""))
}

// visible reports whether the server may see an event.
func (fr *fedReader) visible(l *loaded) (bool, error) {
	v := fr.now // the state at an outlier may be unknown: judge it by today's
	if !stateUnknown(l) {
		var err error
		if v, err = fr.at(l.rec.StateBefore); err != nil {
			return false, err
		}
	}
	if l.ev.Type() == "m.room.member" && l.ev.StateKey() != nil && serverOf(*l.ev.StateKey()) == fr.origin {
		switch m, _ := l.ev.Membership(); m {
		case "join":
			v.joined = true
		case "invite":
			v.invited = true
		}
	}
	switch {
	case v.visibility == "world_readable", v.joined:
		return true, nil
	case v.visibility == "shared" && fr.now.joined:
		return true, nil
	case v.visibility == "invited" && v.invited:
		return true, nil
	}
	return false, nil
}

// seen returns an event the server asks for by ID: M_NOT_FOUND when it
// is not servable, M_FORBIDDEN when the server may not see it.
func (fr *fedReader) seen(eventID string) (*loaded, error) {
	l, err := fr.find(eventID)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, mxerr.NotFound("Unknown event")
	}
	ok, err := fr.visible(l)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxerr.Forbidden("Server %s may not see event %s", fr.origin, eventID)
	}
	return l, nil
}

// serve returns an event as a history walk sends it: whole if the server
// may see it, else redacted, which still links the room's graph and its
// auth without showing the content.
func (fr *fedReader) serve(l *loaded) (json.RawMessage, error) {
	ok, err := fr.visible(l)
	if err != nil || ok || l.rec.Flags&store.FlagRedacted != 0 {
		return l.rec.JSON, err
	}
	red, err := l.ev.Redact()
	if err != nil {
		return nil, err
	}
	return red.JSON(), nil
}

// authChain returns the servable auth chain of roots, the room version
// 12 create event included, oldest first.
func (fr *fedReader) authChain(roots []*loaded) ([]*loaded, error) {
	evs := make([]*pdu.Event, len(roots))
	for i, l := range roots {
		evs[i] = l.ev
	}
	out, err := walkAuthChain(fr.room, evs, fr.find)
	slices.SortFunc(out, byDepth)
	return out, err
}

func byDepth(a, b *loaded) int {
	return cmp.Or(cmp.Compare(a.ev.Depth(), b.ev.Depth()), cmp.Compare(a.rec.Pos, b.rec.Pos))
}

func rawJSON(ls []*loaded) []json.RawMessage {
	out := make([]json.RawMessage, len(ls))
	for i, l := range ls {
		out[i] = l.rec.JSON
	}
	return out
}

func eventIDs(ls []*loaded) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ev.ID()
	}
	return out
}

// FedEvent returns an event for server origin (GET /event): M_NOT_FOUND
// when we do not have it or never serve it, M_FORBIDDEN when origin may
// not see it. The JSON is as stored: redacted if the event was redacted.
func (s *Service) FedEvent(origin, eventID string) (json.RawMessage, error) {
	var out json.RawMessage
	err := s.store.View(func(tx *store.Tx) error {
		rec, err := tx.EventByID(eventID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Unknown event")
		}
		if err != nil {
			return err
		}
		room, err := tx.RoomByNID(rec.RoomNID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Unknown event")
		}
		if err != nil {
			return err
		}
		fr, err := s.newFedReader(tx, room, origin)
		if err != nil {
			return err
		}
		l, err := fr.seen(eventID)
		if err != nil {
			return err
		}
		out = l.rec.JSON
		return nil
	})
	return out, err
}

// fedState returns the state before an event of a room and its auth
// chain, for server origin.
func (s *Service) fedState(origin, roomID, eventID string) (state, chain []*loaded, err error) {
	err = s.store.View(func(tx *store.Tx) error {
		fr, err := s.fedReaderOf(tx, roomID, origin)
		if err != nil {
			return err
		}
		l, err := fr.seen(eventID)
		if err != nil {
			return err
		}
		if stateUnknown(l) {
			return mxerr.NotFound("The state at event %s is not known here", eventID)
		}
		st, err := tx.StateAt(l.rec.StateBefore)
		if err != nil {
			return err
		}
		for _, pos := range st {
			sl, err := fr.findPos(pos)
			if err != nil {
				return err
			}
			if sl != nil {
				state = append(state, sl)
			}
		}
		slices.SortFunc(state, byDepth)
		chain, err = fr.authChain(state)
		return err
	})
	return state, chain, err
}

// FedState returns, for server origin, the state before an event of a
// room and the auth chain of that state (GET /state): M_NOT_FOUND for an
// unknown room or event or an event whose state we do not know,
// M_FORBIDDEN when origin may not see the event.
func (s *Service) FedState(origin, roomID, eventID string) (state, authChain []json.RawMessage, err error) {
	st, chain, err := s.fedState(origin, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	return rawJSON(st), rawJSON(chain), nil
}

// FedStateIDs is FedState with event IDs (GET /state_ids).
func (s *Service) FedStateIDs(origin, roomID, eventID string) (state, authChain []string, err error) {
	st, chain, err := s.fedState(origin, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	return eventIDs(st), eventIDs(chain), nil
}

// FedEventAuth returns, for server origin, the auth chain of an event of
// a room (GET /event_auth), with the errors of FedState.
func (s *Service) FedEventAuth(origin, roomID, eventID string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := s.store.View(func(tx *store.Tx) error {
		fr, err := s.fedReaderOf(tx, roomID, origin)
		if err != nil {
			return err
		}
		l, err := fr.seen(eventID)
		if err != nil {
			return err
		}
		chain, err := fr.authChain([]*loaded{l})
		if err != nil {
			return err
		}
		chain = slices.DeleteFunc(chain, func(c *loaded) bool { return c.rec.Pos == l.rec.Pos })
		out = rawJSON(chain)
		return nil
	})
	return out, err
}

// starts returns the servable events of ids, and M_FORBIDDEN unless
// origin is in the room now or may see one of them: a history walk from
// them answers only a server that could read where it starts.
func (fr *fedReader) starts(ids []string) ([]*loaded, error) {
	var out []*loaded
	allowed := fr.now.joined
	for _, id := range ids {
		l, err := fr.find(id)
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		if !allowed {
			if allowed, err = fr.visible(l); err != nil {
				return nil, err
			}
		}
		out = append(out, l)
	}
	if !allowed {
		return nil, mxerr.Forbidden("Server %s is not in room %s", fr.origin, fr.room.RoomID)
	}
	return out, nil
}

// newest pops the event of greatest depth (then position) off a queue.
func newest(queue *[]*loaded) *loaded {
	i := 0
	for j, l := range *queue {
		if byDepth(l, (*queue)[i]) > 0 {
			i = j
		}
	}
	l := (*queue)[i]
	*queue = slices.Delete(*queue, i, i+1)
	return l
}

// FedBackfill returns, for server origin, the events from and those
// before them by prev_events, newest first, up to limit (at most 100)
// (GET /backfill). Unknown events of from are skipped; events origin may
// not see are sent redacted. M_NOT_FOUND for an unknown room,
// M_FORBIDDEN unless origin is in the room now or may see one of from.
func (s *Service) FedBackfill(origin, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	limit = min(limit, maxBackfill)
	out := []json.RawMessage{}
	err := s.store.View(func(tx *store.Tx) error {
		fr, err := s.fedReaderOf(tx, roomID, origin)
		if err != nil {
			return err
		}
		queue, err := fr.starts(from)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, l := range queue {
			seen[l.ev.ID()] = true
		}
		for len(queue) > 0 && len(out) < limit {
			l := newest(&queue)
			js, err := fr.serve(l)
			if err != nil {
				return err
			}
			out = append(out, js)
			for _, id := range l.ev.PrevEventIDs() {
				if seen[id] {
					continue
				}
				seen[id] = true
				p, err := fr.find(id)
				if err != nil {
					return err
				}
				if p != nil {
					queue = append(queue, p)
				}
			}
		}
		return nil
	})
	return out, err
}

// FedMissingEvents returns, for server origin, the events before latest
// by prev_events that are not in earliest or before them, oldest first,
// up to limit (10 if 0 or less, at most 20), none of depth below minDepth
// (POST /get_missing_events). It walks back newest first, as Synapse
// does, so a gap is filled from its recent end. Errors and redaction are
// those of FedBackfill.
func (s *Service) FedMissingEvents(origin, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	if limit <= 0 {
		limit = defaultMissingEvents
	}
	limit = min(limit, maxServeMissingEvents)
	out := []json.RawMessage{}
	err := s.store.View(func(tx *store.Tx) error {
		fr, err := s.fedReaderOf(tx, roomID, origin)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, id := range earliest {
			seen[id] = true
		}
		queue, err := fr.starts(slices.DeleteFunc(slices.Clone(latest), func(id string) bool { return seen[id] }))
		if err != nil {
			return err
		}
		for _, l := range queue {
			seen[l.ev.ID()] = true
		}
		var found []*loaded
		for len(queue) > 0 && len(found) < limit {
			l := newest(&queue)
			for _, id := range l.ev.PrevEventIDs() {
				if seen[id] || len(found) >= limit {
					continue
				}
				seen[id] = true
				p, err := fr.find(id)
				if err != nil {
					return err
				}
				if p == nil || p.ev.Depth() < minDepth {
					continue
				}
				found = append(found, p)
				queue = append(queue, p)
			}
		}
		slices.SortFunc(found, byDepth)
		for _, l := range found {
			js, err := fr.serve(l)
			if err != nil {
				return err
			}
			out = append(out, js)
		}
		return nil
	})
	return out, err
}
