package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"hearth/server/mxerr"
	"hearth/server/pdu"
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

// KeyCheck asks the identity server whether a key of an
// m.room.third_party_invite is still valid: nil if it is, else the
// Matrix error to answer with.
type KeyCheck func(ctx context.Context, key pdu.ThirdPartyKey) error

// CompleteThirdPartyInvite sends, in a room we are in, the m.room.member
// invite of target completing sender's m.room.third_party_invite: signed
// is the block the identity server signed for target when the address
// was bound. Before anything is sent, the block must verify with one of
// the room's keys for its token, which check must find still valid (the
// spec has the server that completes the invite ask, and no other). An
// invitee of another server is invited through their server as any
// invite is. It returns the event's ID; ErrNotInRoom where we are not in
// the room.
func (s *Service) CompleteThirdPartyInvite(ctx context.Context, roomID, sender, target string, signed json.RawMessage, check KeyCheck) (string, error) {
	var block struct {
		MXID       string                     `json:"mxid"`
		Token      string                     `json:"token"`
		Signatures map[string]json.RawMessage `json:"signatures"`
	}
	if json.Unmarshal(signed, &block) != nil || block.Token == "" || block.MXID == "" || len(block.Signatures) == 0 {
		return "", mxerr.BadJSON("signed needs mxid, token and signatures")
	}
	if block.MXID != target {
		return "", mxerr.Forbidden("The identity server signed the invite for %s, not %s", block.MXID, target)
	}
	var invite *pdu.Event
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotInRoom
		}
		if err != nil {
			return err
		}
		if ok, err := s.resident(tx, room); err != nil || !ok {
			if err == nil {
				err = ErrNotInRoom
			}
			return err
		}
		if invite, err = s.stateEvent(tx, room, "m.room.third_party_invite", block.Token); err != nil {
			if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
				return mxerr.Forbidden("The room has no third-party invite with this token")
			}
			return err
		}
		if m, err := tx.MembershipOf(target, room.NID); err == nil && m.Membership == "join" {
			return mxerr.Forbidden("%s is already in the room", target)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if invite.Sender() != sender {
		return "", mxerr.Forbidden("The room's third-party invite with this token was sent by %s, not %s", invite.Sender(), sender)
	}
	key, err := pdu.VerifyThirdPartySigned(signed, pdu.ThirdPartyInviteKeys(invite.Content()))
	if err != nil {
		return "", mxerr.Forbidden("The invite's signature does not verify with the keys of the room's third-party invite")
	}
	if key.KeyValidityURL != "" {
		if err := check(ctx, key); err != nil {
			return "", err
		}
	}
	var tpi struct {
		DisplayName string `json:"display_name"`
	}
	_ = json.Unmarshal(invite.Content(), &tpi)
	content, err := json.Marshal(map[string]any{
		"membership":         "invite",
		"third_party_invite": map[string]any{"display_name": tpi.DisplayName, "signed": signed},
	})
	if err != nil {
		return "", err
	}
	d := &Draft{Sender: sender, Type: "m.room.member", StateKey: &target, Content: content}
	if serverOf(target) != s.serverName {
		d.exchange = func(ev *pdu.Event) (*pdu.Event, error) { return s.inviteRemote(roomID, ev) }
	}
	return s.Send(roomID, d)
}
