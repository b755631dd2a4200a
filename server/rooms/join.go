package rooms

import (
	"encoding/json"
	"errors"
	"slices"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

type joinRulesContent struct {
	JoinRule string `json:"join_rule"`
	Allow    []struct {
		Type   string `json:"type"`
		RoomID string `json:"room_id"`
	} `json:"allow"`
}

type powerLevelsContent struct {
	Users        map[string]int64 `json:"users"`
	UsersDefault int64            `json:"users_default"`
	Invite       *int64           `json:"invite"`
}

// Join joins c.Target to a local room. In a restricted room (v8+) that
// the user is not invited to, the server checks that they are in one of
// the rooms the join rules allow and names a local member with the power
// to invite in join_authorised_via_users_server, as the spec's restricted
// join requires; the auth rules then check that member.
func (s *Service) Join(roomID string, c *MemberChange) (string, error) {
	c.Membership = "join"
	if resident, err := s.Resident(roomID); err != nil || !resident {
		if e, ok := mxerr.As(err); err != nil && !(ok && e.Code == "M_NOT_FOUND") {
			return "", err
		}
		return s.joinRemote(roomID, c, memberContent(c, nil))
	}
	authoriser, err := s.restrictedAuthoriser(roomID, c.Target)
	if e, ok := mxerr.As(err); ok && e.Code == "M_UNABLE_TO_AUTHORISE_JOIN" {
		// No member here may authorise it, or we cannot tell: another
		// server in the room may (the spec's restricted join, as from
		// any server not in the room).
		others, err := s.RemoteServers(roomID)
		if err != nil || len(others) == 0 || s.handshakes == nil {
			return "", mxerr.Forbidden("This server cannot authorise your join to this restricted room")
		}
		c.Via = append(c.Via, others...)
		return s.joinRemote(roomID, c, memberContent(c, nil))
	}
	if err != nil {
		return "", err
	}
	if authoriser == "" {
		return s.ChangeMembership(roomID, c)
	}
	return s.changeMembershipWith(roomID, c, map[string]any{"join_authorised_via_users_server": authoriser})
}

// restrictedAuthoriser returns the local user who authorises userID's
// join, or "" when the room's join rule needs none.
func (s *Service) restrictedAuthoriser(roomID, userID string) (string, error) {
	var out string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		var jr joinRulesContent
		if err := s.stateContent(tx, room, "m.room.join_rules", "", &jr); err != nil {
			return err
		}
		if jr.JoinRule != "restricted" && jr.JoinRule != "knock_restricted" {
			return nil
		}
		if m, err := tx.MembershipOf(userID, room.NID); err == nil && (m.Membership == "invite" || m.Membership == "join") {
			return nil // an invite, or a profile update of a member, needs no authoriser
		}
		// Only rooms this server is in tell who is in them now; what we
		// knew of a room we left may be stale.
		allowed, unsure := false, false
		for _, a := range jr.Allow {
			if a.Type != "m.room_membership" {
				continue
			}
			other, err := tx.RoomByID(a.RoomID)
			if err == nil {
				var in bool
				if in, err = s.resident(tx, other); err == nil && !in {
					err = store.ErrNotFound
				}
			}
			if err != nil {
				unsure = true
				continue
			}
			if m, err := tx.MembershipOf(userID, other.NID); err == nil && m.Membership == "join" {
				allowed = true
				break
			}
		}
		if !allowed && unsure {
			// The spec's code for "ask another server", which may be in
			// the allowed room.
			return &mxerr.Error{Status: 400, Code: "M_UNABLE_TO_AUTHORISE_JOIN", Message: "This server cannot tell whether you are in a room that allows the join"}
		}
		if !allowed {
			return mxerr.Forbidden("You are not in any of the rooms that allow joining this one")
		}
		out, err = s.localInviter(tx, room)
		return err
	})
	return out, err
}

// creators returns a room's creators: its create event's sender and the
// additional_creators (room version 12 and later) of its content.
func (s *Service) creators(tx *store.Tx, room *store.Room) ([]string, error) {
	create, err := s.stateEvent(tx, room, "m.room.create", "")
	if err != nil {
		return nil, err
	}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	_ = json.Unmarshal(create.Content(), &c)
	return append([]string{create.Sender()}, c.AdditionalCreators...), nil
}

// localInviter returns a joined local member with the power to invite.
func (s *Service) localInviter(tx *store.Tx, room *store.Room) (string, error) {
	var pl powerLevelsContent
	if err := s.stateContent(tx, room, "m.room.power_levels", "", &pl); err != nil {
		return "", err
	}
	creators, err := s.creators(tx, room)
	if err != nil {
		return "", err
	}
	need := int64(0)
	if pl.Invite != nil {
		need = *pl.Invite
	}
	joined, err := s.joinedMembers(tx, room)
	if err != nil {
		return "", err
	}
	var candidates []string
	for _, u := range joined {
		if serverOf(u) != s.serverName {
			continue
		}
		level, listed := pl.Users[u]
		if !listed {
			level = pl.UsersDefault
		}
		if (pdu.PrivilegedCreators(room.Version) && slices.Contains(creators, u)) || level >= need {
			candidates = append(candidates, u)
		}
	}
	if len(candidates) == 0 {
		// The spec's code for "ask another server": the joining server
		// then tries the next resident one.
		return "", &mxerr.Error{Status: 400, Code: "M_UNABLE_TO_AUTHORISE_JOIN", Message: "No member of this server can authorise your join"}
	}
	slices.Sort(candidates) // deterministic
	return candidates[0], nil
}

// stateEvent returns a current state event of a room, or M_NOT_FOUND.
func (s *Service) stateEvent(tx *store.Tx, room *store.Room, typ, key string) (*pdu.Event, error) {
	pos, err := tx.CurrentStateEvent(room.NID, store.StateKey{Type: typ, Key: key})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("No %s state", typ)
	}
	if err != nil {
		return nil, err
	}
	return s.eventAt(tx, room.Version, pos)
}

// stateContent decodes the content of a current state event into v,
// leaving v untouched if there is none.
func (s *Service) stateContent(tx *store.Tx, room *store.Room, typ, key string, v any) error {
	ev, err := s.stateEvent(tx, room, typ, key)
	if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
		return nil
	}
	if err != nil {
		return err
	}
	_ = json.Unmarshal(ev.Content(), v)
	return nil
}
