package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"hearth/server/keys"
)

// The EDUs a peer's transaction may carry. Each is accepted only for
// users of the sending server: a server cannot speak for another's
// users. Room EDUs (typing, receipts) are accepted only for users joined
// to the room, and presence only for users sharing a room with ours. What
// fails a check is dropped, the rest of the EDU kept.

// Ephemeral delivers what inbound EDUs carry to local clients. Typing,
// presence and to-device delivery live in the sync API, which this
// package may not import: the server wires these in. A nil function drops
// that kind of EDU.
type Ephemeral struct {
	// Typing records a remote user typing in a room, or stopping.
	Typing func(roomID, userID string, typing bool)
	// Presence records a remote user's presence.
	Presence func(userID string, p *PresenceUpdate)
	// ToDevice delivers a remote sender's message to the local devices
	// it names ("*" for all of a user's devices), once per origin, sender
	// and message ID.
	ToDevice func(origin string, m *ToDeviceMessage) error
}

// PresenceUpdate is one user's entry of an m.presence EDU.
type PresenceUpdate struct {
	UserID          string  `json:"user_id"`
	Presence        string  `json:"presence"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	LastActiveAgo   int64   `json:"last_active_ago"`
	CurrentlyActive bool    `json:"currently_active,omitempty"`
}

// ToDeviceMessage is the content of an m.direct_to_device EDU.
type ToDeviceMessage struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// errNotOrigins is an EDU about a user of another server than its sender.
var errNotOrigins = errors.New("the user is not of the sending server")

// userServer returns the server name of a user ID, or "" for a
// malformed one.
func userServer(userID string) string {
	server, _ := serverOf(userID)
	return server
}

// joined reports whether userID is joined to roomID as we know the room,
// and the room's server ACL lets the user's server take part.
func (s *Service) joined(userID, roomID string) bool {
	if s.rooms == nil {
		return false
	}
	m, err := s.rooms.Membership(userID, roomID)
	return err == nil && m == "join" && s.rooms.ServerAllowed(roomID, userServer(userID))
}

type typingContent struct {
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
	Typing bool   `json:"typing"`
}

// typingEDU is m.typing: a remote user typing in a room we share.
func (s *Service) typingEDU(_ context.Context, origin string, content json.RawMessage) error {
	var c typingContent
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	if userServer(c.UserID) != origin {
		return errNotOrigins
	}
	if !s.joined(c.UserID, c.RoomID) {
		return fmt.Errorf("%s is not joined to %s", c.UserID, c.RoomID)
	}
	if s.cfg.Ephemeral.Typing != nil {
		s.cfg.Ephemeral.Typing(c.RoomID, c.UserID, c.Typing)
	}
	return nil
}

// receiptUser is one user's receipt in an m.receipt EDU.
type receiptUser struct {
	EventIDs []string `json:"event_ids"`
	Data     struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id,omitempty"`
	} `json:"data"`
}

// receiptEDU is m.receipt: read receipts of remote users, by room, type
// and user. Only public read receipts travel between servers.
func (s *Service) receiptEDU(_ context.Context, origin string, content json.RawMessage) error {
	var c map[string]map[string]map[string]receiptUser
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	var errs []error
	for roomID, byType := range c {
		for userID, r := range byType["m.read"] {
			switch {
			case userServer(userID) != origin:
				errs = append(errs, fmt.Errorf("receipt of %s: %w", userID, errNotOrigins))
			case len(r.EventIDs) == 0:
				errs = append(errs, fmt.Errorf("receipt of %s names no event", userID))
			case !s.joined(userID, roomID):
				errs = append(errs, fmt.Errorf("receipt of %s, who is not joined to %s", userID, roomID))
			default:
				if err := s.rooms.SetRemoteReceipt(userID, roomID, r.EventIDs[0], r.Data.ThreadID, r.Data.TS); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// presenceEDU is m.presence: remote users' presence.
func (s *Service) presenceEDU(_ context.Context, origin string, content json.RawMessage) error {
	var c struct {
		Push []PresenceUpdate `json:"push"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	var errs []error
	for i := range c.Push {
		p := &c.Push[i]
		switch {
		case userServer(p.UserID) != origin:
			errs = append(errs, fmt.Errorf("presence of %s: %w", p.UserID, errNotOrigins))
		case !slices.Contains([]string{"online", "offline", "unavailable"}, p.Presence):
			errs = append(errs, fmt.Errorf("presence of %s: unknown state %q", p.UserID, p.Presence))
		case !s.sharesRoomWithUs(p.UserID):
			// Nobody here may see it: not worth keeping.
		case s.cfg.Ephemeral.Presence != nil:
			s.cfg.Ephemeral.Presence(p.UserID, p)
		}
	}
	return errors.Join(errs...)
}

// sharesRoomWithUs reports whether a remote user is joined to a room one
// of our users is joined to.
func (s *Service) sharesRoomWithUs(userID string) bool {
	if s.rooms == nil {
		return false
	}
	peers, err := s.rooms.SharedUsers(userID)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(peers, func(u string) bool { return userServer(u) == s.cfg.ServerName })
}

// toDeviceEDU is m.direct_to_device: messages from a remote user to
// devices of ours.
func (s *Service) toDeviceEDU(_ context.Context, origin string, content json.RawMessage) error {
	var m ToDeviceMessage
	if err := json.Unmarshal(content, &m); err != nil {
		return err
	}
	if userServer(m.Sender) != origin {
		return errNotOrigins
	}
	if m.Type == "" || m.MessageID == "" {
		return errors.New("to-device message without a type or message_id")
	}
	if s.cfg.Ephemeral.ToDevice == nil {
		return nil
	}
	return s.cfg.Ephemeral.ToDevice(origin, &m)
}

// deviceListEDU is m.device_list_update: a remote user's device changed.
func (s *Service) deviceListEDU(ctx context.Context, origin string, content json.RawMessage) error {
	var u keys.DeviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return err
	}
	if userServer(u.UserID) != origin {
		return errNotOrigins
	}
	if s.cfg.Keys == nil {
		return nil
	}
	return s.cfg.Keys.ApplyDeviceListUpdate(ctx, &u)
}

// signingKeyEDU is m.signing_key_update: a remote user's cross-signing
// keys changed.
func (s *Service) signingKeyEDU(_ context.Context, origin string, content json.RawMessage) error {
	var u keys.SigningKeyUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return err
	}
	if userServer(u.UserID) != origin {
		return errNotOrigins
	}
	if s.cfg.Keys == nil {
		return nil
	}
	return s.cfg.Keys.ApplySigningKeyUpdate(&u)
}
