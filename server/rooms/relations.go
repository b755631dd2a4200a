package rooms

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Relation types the server treats specially (spec: "Relationship types").
const (
	relThread     = store.RelThread
	relReplace    = "m.replace"
	relAnnotation = "m.annotation"
	relReference  = "m.reference"
)

// relation is the m.relates_to of an event's content: a rich reply's
// m.in_reply_to alone has no rel_type and is not one.
type relation struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
	Key     string `json:"key"`
}

// relatesTo returns the relation in content, or nil when it has none or
// one that does not match the schema (which the spec says to ignore).
func relatesTo(content []byte) *relation {
	var c struct {
		RelatesTo json.RawMessage `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.RelatesTo) == 0 {
		return nil
	}
	var r relation
	if json.Unmarshal(c.RelatesTo, &r) != nil || r.RelType == "" || r.EventID == "" {
		return nil
	}
	return &r
}

// maxAnnotationKey bounds an annotation key, in bytes (Synapse's limit).
const maxAnnotationKey = 500

// checkRelation applies the spec's server rules for a new local event's
// relation: the parent must be a known event of the same room, a thread
// may not start at an event that itself relates to another, and a user
// may not send the same annotation twice.
func (s *Service) checkRelation(tx *store.Tx, room *store.Room, d *Draft) error {
	rel := relatesTo(d.Content)
	if rel == nil {
		return nil
	}
	prec, err := servableEvent(tx, rel.EventID)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.Unknown("Can't send relation to unknown event")
	}
	if err != nil {
		return err
	}
	if prec.RoomNID != room.NID {
		return mxerr.Unknown("Relations must be in the same room")
	}
	switch rel.RelType {
	case relThread:
		parent, err := parseRec(room.Version, prec)
		if err != nil {
			return err
		}
		if relatesTo(parent.Content()) != nil {
			// Spec: "Validation of m.thread relationships": 400 M_UNKNOWN.
			return mxerr.Unknown("Cannot start threads from an event with a relation")
		}
	case relAnnotation:
		if rel.Key == "" {
			return mxerr.Unknown("Missing annotation key")
		}
		if len(rel.Key) > maxAnnotationKey {
			return mxerr.Unknown("Annotation key is too long")
		}
		children, err := tx.Children(prec.Pos, relAnnotation)
		if err != nil {
			return err
		}
		for _, c := range children {
			if c.Sender == d.Sender && c.ChildType == d.Type && c.Key == rel.Key {
				return &mxerr.Error{Status: 400, Code: "M_DUPLICATE_ANNOTATION", Message: "Can't send same reaction twice"}
			}
		}
	}
	return nil
}

// indexRelation adds ev's relation, if it has one to a known event of the
// same room, to the relations index.
func (s *Service) indexRelation(tx *store.Tx, room *store.Room, ev *pdu.Event, pos uint64) error {
	rel := relatesTo(ev.Content())
	if rel == nil {
		return nil
	}
	prec, err := servableEvent(tx, rel.EventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && prec.RoomNID != room.NID) {
		return nil
	}
	if err != nil {
		return err
	}
	err = tx.AddRelation(room.NID, &store.Relation{
		Parent: prec.Pos, Child: pos, RelType: rel.RelType,
		ChildID: ev.ID(), ChildType: ev.Type(), Sender: ev.Sender(), Key: rel.Key,
	})
	if errors.Is(err, store.ErrBadRelType) {
		return nil
	}
	return err
}

// Depths of decoration: an event a client asked for gets every bundled
// aggregation; a thread's latest event gets its own, but no thread (no
// loops); events bundled inside (edits, redacted_because) get none.
const (
	decorateFull = iota
	decorateNoThread
	decorateNone
)

// decorate completes ce, the client form of the stored event rec, with
// what depends on the reader and on later events: the redaction target in
// both places clients look for it, unsigned.transaction_id for the
// sending device, unsigned.redacted_because, and the bundled aggregations
// in unsigned["m.relations"].
func (s *Service) decorate(tx *store.Tx, v *view, rec *store.StoredEvent, ev *pdu.Event, ce *ClientEvent, depth int) error {
	if ev.Type() == "m.room.redaction" && !ev.IsState() && ev.Redacts() != "" && !pdu.RedactsInContent(ev.Version()) {
		// Spec v11: serve content.redacts in older room versions too.
		var c map[string]any
		if json.Unmarshal(ce.Content, &c) == nil && c != nil {
			c["redacts"] = ev.Redacts()
			if b, err := json.Marshal(c); err == nil {
				ce.Content = b
			}
		}
	}
	if v.device != "" && ev.Sender() == v.rd.userID {
		txn, err := tx.EventTxn(rec.Pos)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && txn.DeviceID == v.device && "@"+txn.Localpart+":"+s.serverName == ev.Sender() {
			ce.Unsigned["transaction_id"] = clientTxnID(txn)
		}
	}
	if rec.Flags&store.FlagRedacted != 0 && depth < decorateNone {
		rpos, err := tx.RedactedBy(rec.Pos)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			because, err := s.bundledEvent(tx, v, rpos, decorateNone)
			if err != nil {
				return err
			}
			ce.Unsigned["redacted_because"] = because
		}
	}
	if depth < decorateNone && !ev.IsState() {
		rels, err := s.aggregations(tx, v, rec, ev, depth)
		if err != nil {
			return err
		}
		if len(rels) > 0 {
			ce.Unsigned["m.relations"] = rels
		}
	}
	return nil
}

// bundledEvent formats the event at pos for inclusion inside another
// event's unsigned.
func (s *Service) bundledEvent(tx *store.Tx, v *view, pos uint64, depth int) (*ClientEvent, error) {
	rec, err := tx.Event(pos)
	if err != nil {
		return nil, err
	}
	ev, err := parseRec(v.room.Version, rec)
	if err != nil {
		return nil, err
	}
	ce := s.newClientEvent(ev)
	return ce, s.decorate(tx, v, rec, ev, ce, depth)
}

// threadSummary is the bundled aggregation of m.thread.
type threadSummary struct {
	Latest       *ClientEvent `json:"latest_event"`
	Count        int          `json:"count"`
	Participated bool         `json:"current_user_participated"`
}

// eventRef is one entry of the m.reference aggregation.
type eventRef struct {
	EventID string `json:"event_id"`
}

// aggregations returns the bundled aggregations of a non-state event as
// the viewer may see them (spec: "Aggregations of child events"): the
// thread summary, the latest valid edit and the references. Replacements
// and annotations are not themselves aggregated, and a redacted event
// carries no edit.
func (s *Service) aggregations(tx *store.Tx, v *view, rec *store.StoredEvent, ev *pdu.Event, depth int) (map[string]any, error) {
	children, err := tx.Children(rec.Pos, "")
	if err != nil || len(children) == 0 {
		return nil, err
	}
	own := relatesTo(ev.Content())
	if own != nil && (own.RelType == relReplace || own.RelType == relAnnotation) {
		return nil, nil
	}
	var thread, edits, refs []store.Relation
	for _, c := range children {
		switch c.RelType {
		case relThread:
			thread = append(thread, c)
		case relReplace:
			edits = append(edits, c)
		case relReference:
			refs = append(refs, c)
		}
	}
	out := map[string]any{}
	if len(thread) > 0 && depth == decorateFull && (own == nil || own.RelType != relThread) {
		sum, err := s.threadSummary(tx, v, ev, thread)
		if err != nil {
			return nil, err
		}
		if sum != nil {
			out[relThread] = sum
		}
	}
	if len(edits) > 0 && rec.Flags&store.FlagRedacted == 0 {
		edit, err := s.latestEdit(tx, v, ev, edits)
		if err != nil {
			return nil, err
		}
		if edit != nil {
			out[relReplace] = edit
		}
	}
	if len(refs) > 0 {
		chunk := []eventRef{}
		for _, r := range refs {
			if ok, err := s.childVisible(tx, v, r.Child); err != nil {
				return nil, err
			} else if ok {
				chunk = append(chunk, eventRef{EventID: r.ChildID})
			}
		}
		if len(chunk) > 0 {
			out[relReference] = map[string]any{"chunk": chunk}
		}
	}
	return out, nil
}

// threadSummary aggregates the replies of a thread root: the newest reply
// the viewer may see, the number of replies (the spec's "approximate
// number as known to the server"), and whether the viewer took part.
func (s *Service) threadSummary(tx *store.Tx, v *view, root *pdu.Event, replies []store.Relation) (*threadSummary, error) {
	sum := &threadSummary{Count: len(replies), Participated: root.Sender() == v.rd.userID}
	for _, r := range replies {
		if r.Sender == v.rd.userID {
			sum.Participated = true
		}
	}
	for i := len(replies) - 1; i >= 0 && sum.Latest == nil; i-- {
		ok, err := s.childVisible(tx, v, replies[i].Child)
		if err != nil {
			return nil, err
		}
		if ok {
			if sum.Latest, err = s.bundledEvent(tx, v, replies[i].Child, decorateNoThread); err != nil {
				return nil, err
			}
		}
	}
	if sum.Latest == nil {
		return nil, nil
	}
	return sum, nil
}

// latestEdit returns the most recent valid replacement of orig that the
// viewer may see (spec: "Server-side aggregation of m.replace
// relationships"): same sender, same type, no state key on either side,
// m.new_content present; newest by origin_server_ts, then event ID.
func (s *Service) latestEdit(tx *store.Tx, v *view, orig *pdu.Event, edits []store.Relation) (*ClientEvent, error) {
	if orig.IsState() {
		return nil, nil
	}
	var best *pdu.Event
	var bestPos uint64
	for _, r := range edits {
		if r.Sender != orig.Sender() || r.ChildType != orig.Type() {
			continue
		}
		rec, err := tx.Event(r.Child)
		if err != nil {
			return nil, err
		}
		if ok, err := v.visible(rec); err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		ev, err := parseRec(v.room.Version, rec)
		if err != nil {
			return nil, err
		}
		var c struct {
			NewContent json.RawMessage `json:"m.new_content"`
		}
		if ev.IsState() || json.Unmarshal(ev.Content(), &c) != nil || len(c.NewContent) == 0 || c.NewContent[0] != '{' {
			continue
		}
		if best == nil || ev.OriginServerTS() > best.OriginServerTS() ||
			(ev.OriginServerTS() == best.OriginServerTS() && ev.ID() > best.ID()) {
			best, bestPos = ev, r.Child
		}
	}
	if best == nil {
		return nil, nil
	}
	return s.bundledEvent(tx, v, bestPos, decorateNone)
}

func (s *Service) childVisible(tx *store.Tx, v *view, pos uint64) (bool, error) {
	rec, err := tx.Event(pos)
	if err != nil {
		return false, err
	}
	return v.visible(rec)
}

// RelationsQuery selects child events of one parent for
// GET /relations/{eventId}[/{relType}[/{eventType}]].
type RelationsQuery struct {
	EventID   string
	RelType   string // "" for any
	EventType string // "" for any; needs RelType
	From, To  string // pagination tokens, "" for none
	Forward   bool   // dir=f; the default is newest first
	Limit     int
	Recurse   bool
}

// RelationsPage is a page of child events.
type RelationsPage struct {
	Chunk          []*ClientEvent `json:"chunk"`
	NextBatch      string         `json:"next_batch,omitempty"`
	PrevBatch      string         `json:"prev_batch,omitempty"`
	RecursionDepth *int           `json:"recursion_depth,omitempty"`
}

// maxRecursion is how many levels of relations recurse=true follows (the
// spec asks for at least 3).
const maxRecursion = 3

// Relations returns the child events of an event that the reader may see,
// newest first unless q.Forward. Tokens are the topological tokens of
// /messages; a page continues strictly after from and stops before to. An
// event the reader may not see is M_NOT_FOUND.
func (s *Service) Relations(userID, deviceID, roomID string, q *RelationsQuery) (*RelationsPage, error) {
	from, to, err := relationBounds(q.From, q.To)
	if err != nil {
		return nil, err
	}
	page := &RelationsPage{Chunk: []*ClientEvent{}, PrevBatch: q.From}
	if q.Recurse {
		depth := maxRecursion
		page.RecursionDepth = &depth
	}
	err = s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		v.device = deviceID
		prec, err := s.visibleEvent(tx, v, q.EventID)
		if err != nil {
			return err
		}
		levels := 1
		if q.Recurse {
			levels = maxRecursion
		}
		children, err := s.descendants(tx, prec.Pos, q.RelType, q.EventType, levels)
		if err != nil {
			return err
		}
		if !q.Forward {
			slices.Reverse(children)
		}
		var last string // the token of the last event in the chunk
		for _, c := range children {
			if (q.Forward && (c.Child <= from || (to != 0 && c.Child >= to))) ||
				(!q.Forward && ((from != 0 && c.Child >= from) || c.Child <= to)) {
				continue
			}
			if len(page.Chunk) == q.Limit {
				page.NextBatch = last
				break
			}
			rec, err := tx.Event(c.Child)
			if err != nil {
				return err
			}
			if ok, err := v.visible(rec); err != nil {
				return err
			} else if !ok {
				continue
			}
			ce, err := s.clientEvent(tx, v, rec)
			if err != nil {
				return err
			}
			var depth int64
			if ev, err := parseRec(v.room.Version, rec); err == nil {
				depth = ev.Depth()
			}
			last = topoToken(&store.TopoToken{Depth: depth, Pos: rec.Pos})
			page.Chunk = append(page.Chunk, ce)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// relationBounds reads the from and to tokens as stream positions: the
// topological tokens of /messages and /relations both end in one.
func relationBounds(from, to string) (uint64, uint64, error) {
	var out [2]uint64
	for i, tok := range []string{from, to} {
		if tok == "" {
			continue
		}
		pos, err := tokenPos(tok)
		if err != nil {
			return 0, 0, err
		}
		out[i] = pos
	}
	return out[0], out[1], nil
}

// visibleEvent returns an event of v's room that v may see, or
// M_NOT_FOUND.
func (s *Service) visibleEvent(tx *store.Tx, v *view, eventID string) (*store.StoredEvent, error) {
	rec, err := servableEvent(tx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.RoomNID != v.room.NID) {
		return nil, mxerr.NotFound("Event not found")
	}
	if err != nil {
		return nil, err
	}
	if ok, err := v.visible(rec); err != nil {
		return nil, err
	} else if !ok {
		return nil, mxerr.NotFound("Event not found")
	}
	return rec, nil
}

// descendants returns the relations below parent down to levels deep,
// oldest first. The filters apply at every level: an event reached only
// through a non-matching one is left out (spec: "Relationships API").
func (s *Service) descendants(tx *store.Tx, parent uint64, relType, eventType string, levels int) ([]store.Relation, error) {
	var out []store.Relation
	seen := map[uint64]bool{parent: true}
	frontier := []uint64{parent}
	for l := 0; l < levels && len(frontier) > 0; l++ {
		var next []uint64
		for _, p := range frontier {
			children, err := tx.Children(p, relType)
			if err != nil {
				return nil, err
			}
			for _, c := range children {
				if seen[c.Child] || (eventType != "" && c.ChildType != eventType) {
					continue
				}
				seen[c.Child] = true
				out = append(out, c)
				next = append(next, c.Child)
			}
		}
		frontier = next
	}
	slices.SortFunc(out, func(a, b store.Relation) int {
		switch {
		case a.Child < b.Child:
			return -1
		case a.Child > b.Child:
			return 1
		}
		return 0
	})
	return out, nil
}

// ThreadsPage is a page of GET /threads.
type ThreadsPage struct {
	Chunk     []*ClientEvent `json:"chunk"`
	NextBatch string         `json:"next_batch,omitempty"`
}

// Threads returns the thread roots of a room the reader may see, the most
// recently replied-to first, each with its bundled aggregations.
// participated keeps only threads the reader started or replied to. The
// token is the position of the last thread's latest reply.
func (s *Service) Threads(userID, deviceID, roomID, from string, participated bool, limit int) (*ThreadsPage, error) {
	var before uint64
	if from != "" {
		n, err := strconv.ParseUint(from, 10, 64)
		if err != nil || n == 0 {
			return nil, mxerr.InvalidParam("Unknown pagination token")
		}
		before = n
	}
	page := &ThreadsPage{Chunk: []*ClientEvent{}}
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		v.device = deviceID
		keep := func(e store.ThreadEntry) (bool, error) {
			rec, err := tx.Event(e.Root)
			if err != nil {
				return false, err
			}
			if ok, err := v.visible(rec); err != nil || !ok {
				return false, err
			}
			if !participated {
				return true, nil
			}
			return s.participated(tx, v, rec, userID)
		}
		entries, err := tx.Threads(v.room.NID, before, limit+1, keep)
		if err != nil {
			return err
		}
		if len(entries) > limit {
			entries = entries[:limit]
			page.NextBatch = strconv.FormatUint(entries[limit-1].Latest, 10)
		}
		for _, e := range entries {
			rec, err := tx.Event(e.Root)
			if err != nil {
				return err
			}
			ce, err := s.clientEvent(tx, v, rec)
			if err != nil {
				return err
			}
			page.Chunk = append(page.Chunk, ce)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// participated reports whether userID sent the thread root at rec or a
// reply in its thread.
func (s *Service) participated(tx *store.Tx, v *view, rec *store.StoredEvent, userID string) (bool, error) {
	ev, err := parseRec(v.room.Version, rec)
	if err != nil {
		return false, err
	}
	if ev.Sender() == userID {
		return true, nil
	}
	replies, err := tx.Children(rec.Pos, relThread)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(replies, func(r store.Relation) bool { return r.Sender == userID }), nil
}
