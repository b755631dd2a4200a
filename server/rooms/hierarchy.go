package rooms

import (
	"encoding/json"
	"errors"
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
	order     string
	ts        int64
	suggested bool
	ev        StrippedEvent
}

// Hierarchy walks a space breadth-first through its m.space.child events
// (those with a non-empty via), over the rooms this server knows, showing
// userID each room they may see: joined, public or knockable, world
// readable, or restricted to a room they are in. Children are ordered as
// the spec says: by their order field, then the child event's timestamp,
// then room ID. Pages continue by offset into that walk.
func (s *Service) Hierarchy(userID, rootID string, q HierarchyQuery) (*HierarchyPage, error) {
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
	err := s.store.View(func(tx *store.Tx) error {
		root, err := tx.RoomByID(rootID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.Forbidden("You may not see this room")
		}
		if err != nil {
			return err
		}
		if ok, err := s.maySee(tx, userID, root); err != nil {
			return err
		} else if !ok {
			return mxerr.Forbidden("You may not see this room")
		}
		type item struct {
			room  *store.Room
			depth int
		}
		queue, seen, index := []item{{root, 0}}, map[string]bool{rootID: true}, 0
		for len(queue) > 0 {
			it := queue[0]
			queue = queue[1:]
			entry, err := s.publicRoom(tx, it.room)
			if err != nil {
				return err
			}
			children, err := s.spaceChildren(tx, it.room)
			if err != nil {
				return err
			}
			hr := HierarchyRoom{PublicRoom: *entry, ChildrenState: []StrippedEvent{}}
			for _, c := range children {
				hr.ChildrenState = append(hr.ChildrenState, c.ev)
			}
			if index >= offset {
				if len(page.Rooms) == limit {
					page.NextBatch = "h" + strconv.Itoa(index)
					return nil
				}
				page.Rooms = append(page.Rooms, hr)
			}
			index++
			if q.MaxDepth >= 0 && it.depth >= q.MaxDepth {
				continue
			}
			for _, c := range children {
				if seen[c.roomID] || (q.SuggestedOnly && !c.suggested) {
					continue
				}
				seen[c.roomID] = true
				child, err := tx.RoomByID(c.roomID)
				if errors.Is(err, store.ErrNotFound) {
					continue // a room only other servers know: federation's part
				}
				if err != nil {
					return err
				}
				if ok, err := s.maySee(tx, userID, child); err != nil {
					return err
				} else if ok {
					queue = append(queue, item{child, it.depth + 1})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// spaceChildren returns a room's m.space.child events that name a via,
// in the spec's order.
func (s *Service) spaceChildren(tx *store.Tx, room *store.Room) ([]spaceChild, error) {
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
		var c struct {
			Via       []string `json:"via"`
			Order     any      `json:"order"`
			Suggested bool     `json:"suggested"`
		}
		if json.Unmarshal(ev.Content(), &c) != nil || len(c.Via) == 0 {
			continue
		}
		order, _ := c.Order.(string)
		if len(order) > 50 || strings.IndexFunc(order, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			order = "" // the spec's valid orders: up to 50 printable ASCII characters
		}
		out = append(out, spaceChild{roomID: sk.Key, order: order, ts: ev.OriginServerTS(), suggested: c.Suggested,
			ev: StrippedEvent{Type: ev.Type(), StateKey: sk.Key, Content: ev.Content(), Sender: ev.Sender(), OriginServerTS: ev.OriginServerTS()}})
	}
	slices.SortFunc(out, func(a, b spaceChild) int {
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
	return out, nil
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
