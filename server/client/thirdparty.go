package client

import (
	"encoding/json"

	"hearth/server/httpx"
	"hearth/server/identity"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// invite3PID is the spec's Invite3pid: whom to invite by a third-party
// identifier, and the identity server (and the user's token there) that
// maps it to a Matrix ID.
type invite3PID struct {
	IDServer      string `json:"id_server"`
	IDAccessToken string `json:"id_access_token"`
	Medium        string `json:"medium"`
	Address       string `json:"address"`
}

// check reports a missing field as M_MISSING_PARAM: the spec requires all
// four (Synapse too, since identity servers want the token).
func (in *invite3PID) check() error {
	for _, f := range []struct{ name, v string }{
		{"id_server", in.IDServer}, {"id_access_token", in.IDAccessToken}, {"medium", in.Medium}, {"address", in.Address},
	} {
		if f.v == "" {
			return mxerr.MissingParam("Missing %s: a third-party invite needs id_server, id_access_token, medium and address", f.name)
		}
	}
	return nil
}

// inviteByAddress invites the holder of in's 3PID to a room as r's user:
// where the identity server knows their Matrix ID, an ordinary invite;
// otherwise the identity server stores the invite (and tells the address)
// and the room gets an m.room.third_party_invite with its token and keys,
// which the invitee's server completes once the address is bound.
func (a *API) inviteByAddress(r *httpx.Request, roomID string, in *invite3PID) error {
	if err := in.check(); err != nil {
		return err
	}
	if a.cfg.Identity == nil {
		return mxerr.Forbidden("Third-party invites are not available on this server")
	}
	// Only members invite: checked before the identity server learns of
	// the invite.
	ic, err := a.rooms.ThirdPartyInviteContext(roomID, r.Principal.UserID)
	if err != nil {
		return err
	}
	mxid, err := a.cfg.Identity.Lookup(r.Context(), in.IDServer, in.IDAccessToken, in.Medium, in.Address)
	if err != nil {
		return err
	}
	if mxid != "" {
		_, err := a.changeMember(r, roomID, mxid, "invite", "")
		return err
	}
	stored, err := a.cfg.Identity.StoreInvite(r.Context(), in.IDServer, in.IDAccessToken, &identity.Invite{
		Medium: in.Medium, Address: in.Address, RoomID: roomID, Sender: r.Principal.UserID,
		RoomAlias: ic.RoomAlias, RoomAvatarURL: ic.RoomAvatarURL, RoomJoinRules: ic.JoinRule, RoomName: ic.RoomName,
		RoomType: ic.RoomType, SenderDisplayName: ic.SenderDisplayName, SenderAvatarURL: ic.SenderAvatarURL,
	})
	if err != nil {
		return err
	}
	// public_key and key_validity_url, required still, repeat the first
	// key (the identity server's long-term one) for older servers.
	content, err := json.Marshal(map[string]any{
		"display_name":     stored.DisplayName,
		"public_keys":      stored.PublicKeys,
		"public_key":       stored.PublicKeys[0].PublicKey,
		"key_validity_url": stored.PublicKeys[0].KeyValidityURL,
	})
	if err != nil {
		return err
	}
	token := stored.Token
	_, err = a.rooms.Send(roomID, &rooms.Draft{Sender: r.Principal.UserID, Type: "m.room.third_party_invite", StateKey: &token, Content: content})
	return err
}
