package rooms

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"hearth/server/mxerr"
	"hearth/store"
)

// HierarchyRoom is one room of /hierarchy: its directory entry and its
// m.space.child events in stripped form.
type HierarchyRoom struct {
	PublicRoom
	ChildrenState []StrippedEvent `json:"children_state"`
}

// StrippedEvent is the spec's stripped state event.
type StrippedEvent struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts,omitempty"`
}

// HierarchyPage is one page of /hierarchy.
type HierarchyPage struct {
	Rooms     []HierarchyRoom `json:"rooms"`
	NextBatch string          `json:"next_batch,omitempty"`
}

// HierarchyQuery is a /hierarchy request.
type HierarchyQuery struct {
	SuggestedOnly bool
	Limit         int // 0 for 50
	MaxDepth      int // -1 for no limit
	From          string
}

type spaceChild struct {
	roomID    string
	via       []string
	order     string
	ts        int64
	suggested bool
	ev        StrippedEvent
}

// hierarchyNode is one room of a hierarchy walk as the requesting user
// sees it: its entry, whether they may see it, and its children.
type hierarchyNode struct {
	entry    PublicRoom // its links are shown from children, as walked
	visible  bool
	children []spaceChild
}

// Hierarchy walks a space depth-first through its m.space.child events
// (those with a non-empty via), showing userID each room they may see:
// joined or invited, public or knockable, world readable, or restricted
// to a room they are in. Rooms this server is in are read locally; the
// others are asked of the servers their m.space.child events name (the
// spec's "fill in missing rooms" over federation's /hierarchy), and rooms
// no server describes are left out. Children are ordered as the spec
// says: by their order field, then the child event's timestamp, then room
// ID. Pages continue by offset into that walk. The root must be a room
// this server knows and the user may see.
func (s *Service) Hierarchy(ctx context.Context, userID, rootID string, q HierarchyQuery) (*HierarchyPage, error) {
	offset := 0
	if q.From != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(q.From, "h"))
		if err != nil || !strings.HasPrefix(q.From, "h") || n < 0 {
			return nil, mxerr.InvalidParam("Invalid pagination token")
		}
		offset = n
	}
	limit := q.Limit
	if limit <= 0 || limit > 50 {
		limit = 50
	}
	page := &HierarchyPage{Rooms: []HierarchyRoom{}}
	type item struct {
		roomID string
		via    []string
		depth  int
	}
	// Depth first, as the spec pages it: a stack, children pushed last
	// first so the first child is walked next.
	stack, seen, index := []item{{roomID: rootID}}, map[string]bool{rootID: true}, 0
	known := map[string]*ServerHierarchyRoom{} // summaries other servers sent as children
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		node, err := s.hierarchyNode(ctx, userID, it.roomID, it.via, it.depth == 0, q.SuggestedOnly, known)
		if err != nil {
			return nil, err
		}
		if node == nil || !node.visible {
			if it.depth == 0 {
				return nil, mxerr.Forbidden("You may not see this room")
			}
			continue
		}
		// The links shown are those walked: with suggested_only, the
		// suggested ones (Synapse's).
		entry := HierarchyRoom{PublicRoom: node.entry, ChildrenState: []StrippedEvent{}}
		var next []item
		for _, c := range node.children {
			if q.SuggestedOnly && !c.suggested {
				continue
			}
			entry.ChildrenState = append(entry.ChildrenState, c.ev)
			if !seen[c.roomID] && (q.MaxDepth < 0 || it.depth < q.MaxDepth) {
				seen[c.roomID] = true
				next = append(next, item{roomID: c.roomID, via: c.via, depth: it.depth + 1})
			}
		}
		if index >= offset {
			if len(page.Rooms) == limit {
				page.NextBatch = "h" + strconv.Itoa(index)
				return page, nil
			}
			page.Rooms = append(page.Rooms, entry)
		}
		index++
		for i := len(next) - 1; i >= 0; i-- {
			stack = append(stack, next[i])
		}
	}
	return page, nil
}

// hierarchyNode describes roomID for userID's hierarchy walk: from our
// own state when this server is in the room, else from another server
// (a summary a parent's answer carried, or /hierarchy asked of via), else
// from what we last knew of it. nil means no server could describe it;
// the root is never asked of another server.
func (s *Service) hierarchyNode(ctx context.Context, userID, roomID string, via []string, root, suggestedOnly bool, known map[string]*ServerHierarchyRoom) (*hierarchyNode, error) {
	var local *hierarchyNode
	resident := false
	err := s.store.View(func(tx *store.Tx) error {
		room, err := roomIfKnown(tx, roomID)
		if err != nil || room == nil {
			return err
		}
		if resident, err = s.resident(tx, room); err != nil {
			return err
		}
		local = &hierarchyNode{}
		if local.visible, err = s.maySee(tx, userID, room); err != nil || !local.visible {
			return err
		}
		entry, err := s.publicRoom(tx, room)
		if err != nil {
			return err
		}
		if local.children, err = s.spaceChildren(tx, room); err != nil {
			return err
		}
		local.entry = *entry
		return nil
	})
	if err != nil || resident || root {
		return local, err
	}
	summary := known[roomID]
	if summary == nil {
		summary = s.remoteHierarchy(ctx, roomID, via, suggestedOnly, known)
	}
	if summary == nil {
		return local, nil // no other server answered: what we last knew, if anything
	}
	node := &hierarchyNode{entry: summary.PublicRoom}
	if summary.RoomType == "m.space" {
		node.children = childrenFromStripped(summary.ChildrenState)
	}
	if node.visible, err = s.maySeeRemote(userID, summary); err != nil {
		return nil, err
	}
	return node, nil
}

// remoteHierarchy asks the via servers, in turn, for a room's summary
// and its children's (GET /_matrix/federation/v1/hierarchy), remembering
// the children's in known; nil when none answers.
func (s *Service) remoteHierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool, known map[string]*ServerHierarchyRoom) *ServerHierarchyRoom {
	if s.remote == nil {
		return nil
	}
	for _, server := range via {
		if server == s.serverName {
			continue
		}
		h, err := s.remote.Hierarchy(ctx, server, roomID, suggestedOnly)
		if err != nil {
			s.log.Info("federation: hierarchy not fetched", "room", roomID, "server", server, "err", err)
			continue
		}
		if h.Room.RoomID != roomID {
			s.log.Info("federation: hierarchy of another room", "room", roomID, "server", server, "got", h.Room.RoomID)
			continue
		}
		for i := range h.Children {
			if c := &h.Children[i]; c.RoomID != "" && known[c.RoomID] == nil {
				known[c.RoomID] = c
			}
		}
		return &h.Room
	}
	return nil
}

// maySeeRemote reports whether userID may see the summary of a room this
// server is not in, as another server described it: as maySee, with the
// restricted rooms' allowed rooms taken from the summary.
func (s *Service) maySeeRemote(userID string, r *ServerHierarchyRoom) (bool, error) {
	switch {
	case r.WorldReadable, r.JoinRule == "public", r.JoinRule == "knock", r.JoinRule == "knock_restricted":
		return true, nil
	case r.JoinRule != "restricted":
		return false, nil
	}
	ok := false
	err := s.store.View(func(tx *store.Tx) error {
		for _, id := range r.AllowedRoomIDs {
			if other, err := tx.RoomByID(id); err == nil {
				if m, err := tx.MembershipOf(userID, other.NID); err == nil && m.Membership == "join" {
					ok = true
					return nil
				}
			}
		}
		return nil
	})
	return ok, err
}

// spaceChildren returns a space's m.space.child events that name a via,
// in the spec's order; none for a room that is not a space (its create
// event's type is not m.space), as Synapse walks them.
func (s *Service) spaceChildren(tx *store.Tx, room *store.Room) ([]spaceChild, error) {
	var create struct {
		Type string `json:"type"`
	}
	if err := s.stateContent(tx, room, "m.room.create", "", &create); err != nil {
		return nil, err
	}
	if create.Type != "m.space" {
		return nil, nil
	}
	state, err := tx.CurrentState(room.NID, "m.space.child")
	if err != nil {
		return nil, err
	}
	var out []spaceChild
	for sk, pos := range state {
		ev, err := s.eventAt(tx, room.Version, pos)
		if err != nil {
			return nil, err
		}
		stripped := StrippedEvent{Type: ev.Type(), StateKey: sk.Key, Content: ev.Content(), Sender: ev.Sender(), OriginServerTS: ev.OriginServerTS()}
		if c, ok := parseSpaceChild(stripped); ok {
			out = append(out, c)
		}
	}
	sortSpaceChildren(out)
	return out, nil
}

// childrenFromStripped returns the m.space.child events among a remote
// summary's children_state that name a via, in the spec's order.
func childrenFromStripped(evs []StrippedEvent) []spaceChild {
	var out []spaceChild
	for _, ev := range evs {
		if ev.Type != "m.space.child" {
			continue
		}
		if c, ok := parseSpaceChild(ev); ok {
			out = append(out, c)
		}
	}
	sortSpaceChildren(out)
	return out
}

// parseSpaceChild reads an m.space.child event; ok is false for one that
// names no via (the spec: such a child is not part of the space).
func parseSpaceChild(ev StrippedEvent) (spaceChild, bool) {
	var c struct {
		Via       []string `json:"via"`
		Order     any      `json:"order"`
		Suggested bool     `json:"suggested"`
	}
	if json.Unmarshal(ev.Content, &c) != nil || len(c.Via) == 0 || ev.StateKey == "" {
		return spaceChild{}, false
	}
	order, _ := c.Order.(string)
	if len(order) > 50 || strings.IndexFunc(order, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		order = "" // the spec's valid orders: up to 50 printable ASCII characters
	}
	return spaceChild{roomID: ev.StateKey, via: c.Via, order: order, ts: ev.OriginServerTS, suggested: c.Suggested, ev: ev}, true
}

// sortSpaceChildren puts children in the spec's order: by order (those
// with one first), then the child event's timestamp, then room ID.
func sortSpaceChildren(cs []spaceChild) {
	slices.SortFunc(cs, func(a, b spaceChild) int {
		switch {
		case a.order != "" && b.order == "":
			return -1
		case a.order == "" && b.order != "":
			return 1
		case a.order != b.order:
			return strings.Compare(a.order, b.order)
		case a.ts != b.ts:
			return int(a.ts - b.ts)
		}
		return strings.Compare(a.roomID, b.roomID)
	})
}

// maySee reports whether userID may see a room's summary in a hierarchy.
func (s *Service) maySee(tx *store.Tx, userID string, room *store.Room) (bool, error) {
	if m, err := tx.MembershipOf(userID, room.NID); err == nil && (m.Membership == "join" || m.Membership == "invite") {
		return true, nil
	}
	var jr joinRulesContent
	if err := s.stateContent(tx, room, "m.room.join_rules", "", &jr); err != nil {
		return false, err
	}
	switch jr.JoinRule {
	case "public", "knock":
		return true, nil
	case "restricted", "knock_restricted":
		if jr.JoinRule == "knock_restricted" {
			return true, nil
		}
		for _, a := range jr.Allow {
			if other, err := tx.RoomByID(a.RoomID); err == nil {
				if m, err := tx.MembershipOf(userID, other.NID); err == nil && m.Membership == "join" {
					return true, nil
				}
			}
		}
	}
	var hv struct {
		V string `json:"history_visibility"`
	}
	if err := s.stateContent(tx, room, "m.room.history_visibility", "", &hv); err != nil {
		return false, err
	}
	return hv.V == "world_readable", nil
}
