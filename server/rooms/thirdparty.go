package rooms

import (
	"errors"

	"hearth/server/mxerr"
	"hearth/store"
)

// Third-party invites (the spec's module of that name) in two steps: a
// member invites an address (an email) the identity server knows no
// Matrix ID for, and the room gets an m.room.third_party_invite with the
// identity server's token and keys; when the address is bound, the
// identity server tells the invitee's server, which completes it with an
// m.room.member invite carrying the block the identity server signed.
// The identity server itself is the callers' business (client and
// federation); here are the room's sides of both steps.

// InviteContext is what the identity server is told of a room and its
// inviter when it stores a third-party invite, for the message it sends
// the address.
type InviteContext struct {
	RoomAlias, RoomName, RoomAvatarURL, JoinRule, RoomType string
	SenderDisplayName, SenderAvatarURL                     string
}

// ThirdPartyInviteContext returns the InviteContext of userID inviting
// someone by address to a room, or M_FORBIDDEN unless they are joined to
// it (only members invite; checked before the identity server is asked
// to store anything).
func (s *Service) ThirdPartyInviteContext(roomID, userID string) (*InviteContext, error) {
	out := &InviteContext{}
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		m, err := tx.MembershipOf(userID, room.NID)
		if errors.Is(err, store.ErrNotFound) || err == nil && m.Membership != "join" {
			return mxerr.Forbidden("You are not in the room")
		}
		if err != nil {
			return err
		}
		var alias struct {
			Alias string `json:"alias"`
		}
		var name struct {
			Name string `json:"name"`
		}
		var avatar struct {
			URL string `json:"url"`
		}
		var rule struct {
			JoinRule string `json:"join_rule"`
		}
		var create struct {
			Type string `json:"type"`
		}
		var member struct {
			DisplayName string `json:"displayname"`
			AvatarURL   string `json:"avatar_url"`
		}
		for _, c := range []struct {
			typ, key string
			v        any
		}{
			{"m.room.canonical_alias", "", &alias}, {"m.room.name", "", &name}, {"m.room.avatar", "", &avatar},
			{"m.room.join_rules", "", &rule}, {"m.room.create", "", &create}, {"m.room.member", userID, &member},
		} {
			if err := s.stateContent(tx, room, c.typ, c.key, c.v); err != nil {
				return err
			}
		}
		*out = InviteContext{RoomAlias: alias.Alias, RoomName: name.Name, RoomAvatarURL: avatar.URL, JoinRule: rule.JoinRule,
			RoomType: create.Type, SenderDisplayName: member.DisplayName, SenderAvatarURL: member.AvatarURL}
		return nil
	})
	return out, err
}
