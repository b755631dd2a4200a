package rooms

import (
	"errors"
	"slices"

	"hearth/server/mxerr"
	"hearth/store"
)

// This file answers reads other servers make over federation: what a
// server may see is decided by its joined members and the room's join
// rule and history visibility, not by one user's membership.

// ServerHierarchyRoom is a room of the federation /hierarchy answer: its
// directory entry, the rooms its restricted join rule allows from, and
// its m.space.child events.
type ServerHierarchyRoom struct {
	PublicRoom
	AllowedRoomIDs []string        `json:"allowed_room_ids,omitempty"`
	ChildrenState  []StrippedEvent `json:"children_state"`
}

// ServerHierarchy is the answer to GET /_matrix/federation/v1/hierarchy.
type ServerHierarchy struct {
	Room                 ServerHierarchyRoom   `json:"room"`
	Children             []ServerHierarchyRoom `json:"children"`
	InaccessibleChildren []string              `json:"inaccessible_children"`
}

// HierarchyForServer returns a space and its direct children as the
// server origin may see them (spec: federation "Spaces"): no pagination;
// children this server does not know are left out, known ones origin
// could neither peek nor join are listed as inaccessible. A room origin
// may not see, or that is unknown, is 404 M_NOT_FOUND.
func (s *Service) HierarchyForServer(origin, roomID string, suggestedOnly bool) (*ServerHierarchy, error) {
	out := &ServerHierarchy{Children: []ServerHierarchyRoom{}, InaccessibleChildren: []string{}}
	err := s.store.View(func(tx *store.Tx) error {
		root, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Room is unknown to this server")
		}
		if err != nil {
			return err
		}
		if ok, err := s.serverMaySee(tx, origin, root); err != nil {
			return err
		} else if !ok {
			return mxerr.NotFound("Room is unknown to this server")
		}
		children, err := s.spaceChildren(tx, root)
		if err != nil {
			return err
		}
		entry, err := s.serverHierarchyRoom(tx, root, children)
		if err != nil {
			return err
		}
		out.Room = *entry
		for _, c := range children {
			if suggestedOnly && !c.suggested {
				continue
			}
			child, err := tx.RoomByID(c.roomID)
			if errors.Is(err, store.ErrNotFound) {
				continue // the spec: rooms we cannot describe are left out
			}
			if err != nil {
				return err
			}
			if ok, err := s.serverMaySee(tx, origin, child); err != nil {
				return err
			} else if !ok {
				out.InaccessibleChildren = append(out.InaccessibleChildren, c.roomID)
				continue
			}
			grand, err := s.spaceChildren(tx, child)
			if err != nil {
				return err
			}
			e, err := s.serverHierarchyRoom(tx, child, grand)
			if err != nil {
				return err
			}
			out.Children = append(out.Children, *e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Service) serverHierarchyRoom(tx *store.Tx, room *store.Room, children []spaceChild) (*ServerHierarchyRoom, error) {
	entry, err := s.publicRoom(tx, room)
	if err != nil {
		return nil, err
	}
	out := &ServerHierarchyRoom{PublicRoom: *entry, ChildrenState: []StrippedEvent{}}
	for _, c := range children {
		out.ChildrenState = append(out.ChildrenState, c.ev)
	}
	if out.AllowedRoomIDs, err = s.allowedRoomIDs(tx, room); err != nil {
		return nil, err
	}
	return out, nil
}

// allowedRoomIDs returns the rooms whose members a restricted room's
// join rule lets in; none for another join rule.
func (s *Service) allowedRoomIDs(tx *store.Tx, room *store.Room) ([]string, error) {
	var jr joinRulesContent
	if err := s.stateContent(tx, room, "m.room.join_rules", "", &jr); err != nil {
		return nil, err
	}
	var out []string
	if jr.JoinRule == "restricted" || jr.JoinRule == "knock_restricted" {
		for _, a := range jr.Allow {
			if a.Type == "m.room_membership" && a.RoomID != "" {
				out = append(out, a.RoomID)
			}
		}
	}
	return out, nil
}

// serverMaySee reports whether the server origin may peek into or join a
// room: it has a member joined, the room is public or knockable, its
// restricted rule allows a room origin is in, or it is world readable.
func (s *Service) serverMaySee(tx *store.Tx, origin string, room *store.Room) (bool, error) {
	if in, err := s.serverJoined(tx, origin, room); err != nil || in {
		return in, err
	}
	var jr joinRulesContent
	if err := s.stateContent(tx, room, "m.room.join_rules", "", &jr); err != nil {
		return false, err
	}
	switch jr.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	case "restricted":
		for _, a := range jr.Allow {
			other, err := tx.RoomByID(a.RoomID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if in, err := s.serverJoined(tx, origin, other); err != nil || in {
				return in, err
			}
		}
	}
	return s.worldReadable(tx, room)
}

// serverJoined reports whether origin has a member joined to room.
func (s *Service) serverJoined(tx *store.Tx, origin string, room *store.Room) (bool, error) {
	servers, err := s.joinedServers(tx, room)
	_, in := slices.BinarySearch(servers, origin)
	return in, err
}

func (s *Service) worldReadable(tx *store.Tx, room *store.Room) (bool, error) {
	var hv struct {
		V string `json:"history_visibility"`
	}
	if err := s.stateContent(tx, room, "m.room.history_visibility", "", &hv); err != nil {
		return false, err
	}
	return hv.V == "world_readable", nil
}

// EventNearForServer is EventNear for the server origin: the room must be
// known here and origin joined to it, or the room world readable;
// otherwise 404 M_NOT_FOUND, which does not tell whether it exists.
func (s *Service) EventNearForServer(origin, roomID string, ts int64, forward bool) (*EventAtTime, error) {
	var best *EventAtTime
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Room is unknown to this server")
		}
		if err != nil {
			return err
		}
		ok, err := s.serverJoined(tx, origin, room)
		if err == nil && !ok {
			ok, err = s.worldReadable(tx, room)
		}
		if err != nil {
			return err
		}
		if !ok {
			return mxerr.NotFound("Room is unknown to this server")
		}
		best, err = s.nearest(tx, room, ts, forward, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if best == nil {
		return nil, mxerr.NotFound("No event found")
	}
	return best, nil
}
