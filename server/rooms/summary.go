package rooms

import (
	"context"

	"hearth/server/mxerr"
	"hearth/store"
)

// RoomPreview is the answer to GET /_matrix/client/v1/room_summary
// (spec v1.15): the room's directory entry with its type, version,
// encryption, the rooms a restricted join rule allows, and the caller's
// membership.
type RoomPreview struct {
	PublicRoom
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
	Encryption     string   `json:"encryption,omitempty"`
	RoomVersion    string   `json:"room_version,omitempty"`
	Membership     string   `json:"membership,omitempty"`
}

// Preview returns the summary of roomID as userID may see it: from our
// own state when this server is in the room, else as one of via describes
// it (federation /hierarchy), as Synapse does. A room userID may not see
// (not a member, invited or knocking, and neither public, knockable,
// world readable nor restricted to a room they are in) is 404, like one
// nobody knows, so the answer does not tell whether it exists.
func (s *Service) Preview(ctx context.Context, userID, roomID string, via []string) (*RoomPreview, error) {
	var out *RoomPreview
	resident := false
	membership := ""
	err := s.store.View(func(tx *store.Tx) error {
		room, err := roomIfKnown(tx, roomID)
		if err != nil || room == nil {
			return err
		}
		if m, err := tx.MembershipOf(userID, room.NID); err == nil {
			membership = m.Membership
		}
		if resident, err = s.resident(tx, room); err != nil || !resident {
			return err
		}
		visible, err := s.maySee(tx, userID, room)
		if err != nil || !(visible || membership == "knock") {
			return err
		}
		entry, err := s.publicRoom(tx, room)
		if err != nil {
			return err
		}
		out = &RoomPreview{PublicRoom: *entry, RoomVersion: room.Version, Membership: membership}
		if out.AllowedRoomIDs, err = s.allowedRoomIDs(tx, room); err != nil {
			return err
		}
		var enc struct {
			Algorithm string `json:"algorithm"`
		}
		if err := s.stateContent(tx, room, "m.room.encryption", "", &enc); err != nil {
			return err
		}
		out.Encryption = enc.Algorithm
		return nil
	})
	if err != nil || out != nil {
		return out, err
	}
	if !resident {
		if h := s.remoteHierarchy(ctx, roomID, via, false, map[string]*ServerHierarchyRoom{}); h != nil {
			visible, err := s.maySeeRemote(userID, h)
			if err != nil {
				return nil, err
			}
			if visible || membership == "invite" || membership == "knock" {
				return &RoomPreview{PublicRoom: h.PublicRoom, AllowedRoomIDs: h.AllowedRoomIDs, Membership: membership}, nil
			}
		}
	}
	return nil, mxerr.NotFound("Room not found")
}
