package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/server/rooms"
	"hearth/store"
)

// Third-party invites, the server-server side (spec: "Third-party
// invites"). An identity server tells us (/3pid/onbind) that an address
// with pending invites is now bound to one of our users; for each, the
// m.room.member invite completing the room's m.room.third_party_invite
// is built by a server in the room: by us where we are, else by the
// inviter's server, asked through /exchange_third_party_invite, which is
// also how other servers ask us.

// maxOnBindInvites bounds the invites of one /3pid/onbind: each may cost
// requests to other servers, and the endpoint needs no authentication.
const maxOnBindInvites = 50

// thirdPartyRoutes are /3pid/onbind and /exchange_third_party_invite.
func (s *Service) thirdPartyRoutes() []httpx.Route {
	return []httpx.Route{
		// The spec says PUT; Sydent, the identity server most run, POSTs,
		// and Synapse takes POST.
		{Method: "PUT", Path: "/v1/3pid/onbind", Auth: httpx.NoAuth, Limit: s.onBindIP, Handler: httpx.JSON(s.onBind)},
		{Method: "POST", Path: "/v1/3pid/onbind", Auth: httpx.NoAuth, Limit: s.onBindIP, Handler: httpx.JSON(s.onBind)},
		{Method: "PUT", Path: "/v1/exchange_third_party_invite/{roomId}", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.exchangeThirdPartyInvite)},
	}
}

// onBindInvite is one pending invite of an /3pid/onbind.
type onBindInvite struct {
	Medium  string          `json:"medium"`
	Address string          `json:"address"`
	MXID    string          `json:"mxid"`
	RoomID  string          `json:"room_id"`
	Sender  string          `json:"sender"`
	Signed  json.RawMessage `json:"signed"`
}

type onBindReq struct {
	Medium  string         `json:"medium"`
	Address string         `json:"address"`
	MXID    string         `json:"mxid"`
	Invites []onBindInvite `json:"invites"`
}

// onBind is PUT /_matrix/federation/v1/3pid/onbind: an identity server
// says an address is now bound to one of our users and hands over the
// invites stored for it. Anyone may call it: what makes an invite is the
// identity server's signature on each invite's signed block, which the
// server in the room checks against the room's keys. Every invite is
// tried; the answer is the last failure, if any.
func (s *Service) onBind(r *httpx.Request, in *onBindReq) (*httpx.Empty, error) {
	if in.Medium == "" || in.Address == "" || in.MXID == "" || in.Invites == nil {
		return nil, mxerr.MissingParam("onbind needs medium, address, mxid and invites")
	}
	lp, ok := s.localpart(in.MXID)
	if !ok {
		return nil, mxerr.InvalidParam("%s is not a user of this server", in.MXID)
	}
	var u *store.User
	err := s.store.View(func(tx *store.Tx) (err error) {
		u, err = tx.User(lp)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || err == nil && u.Deactivated {
		return nil, mxerr.NotFound("No user %s here", in.MXID)
	}
	if err != nil {
		return nil, err
	}
	if len(in.Invites) > maxOnBindInvites {
		return nil, mxerr.InvalidParam("At most %d invites per request", maxOnBindInvites)
	}
	for i, inv := range in.Invites {
		if err := checkOnBindInvite(&inv, in.MXID); err != nil {
			return nil, mxerr.BadJSON("invites[%d]: %s", i, err)
		}
	}
	var last error
	for _, inv := range in.Invites {
		if err := s.completeThirdPartyInvite(r.Context(), &inv); err != nil {
			r.Log.Info("federation: third-party invite not completed", "room", inv.RoomID, "user", inv.MXID, "err", err)
			last = err
		}
	}
	return &httpx.Empty{}, last
}

// checkOnBindInvite checks one invite's shape: of the bound user, to a
// room, from a user, with a signed block for that user.
func checkOnBindInvite(inv *onBindInvite, mxid string) error {
	var signed struct {
		MXID  string `json:"mxid"`
		Token string `json:"token"`
	}
	switch {
	case inv.Medium == "" || inv.Address == "":
		return errors.New("medium and address are required")
	case inv.MXID != mxid:
		return errors.New("mxid is not the bound user")
	case !strings.HasPrefix(inv.RoomID, "!"):
		return errors.New("room_id is not a room ID")
	case !pdu.ValidUserID(inv.Sender):
		return errors.New("sender is not a user ID")
	case json.Unmarshal(inv.Signed, &signed) != nil || signed.Token == "":
		return errors.New("signed needs a token")
	case signed.MXID != mxid:
		return errors.New("signed is for another user")
	}
	return nil
}

// completeThirdPartyInvite has the invite of one onbind invite sent: by
// us in a room we are in, else through the inviter's server (and, for a
// room ID that names one, the room's).
func (s *Service) completeThirdPartyInvite(ctx context.Context, inv *onBindInvite) error {
	_, err := s.rooms.CompleteThirdPartyInvite(ctx, inv.RoomID, inv.Sender, inv.MXID, inv.Signed, s.checkThirdPartyKey)
	if !errors.Is(err, rooms.ErrNotInRoom) {
		return err
	}
	partial := exchangeReq{
		Type: "m.room.member", RoomID: inv.RoomID, Sender: inv.Sender, StateKey: inv.MXID,
		Content: exchangeContent{Membership: "invite", ThirdPartyInvite: &exchangeInvite{Signed: inv.Signed}},
	}
	var servers []string
	for _, id := range []string{inv.Sender, inv.RoomID} {
		if _, server, ok := strings.Cut(id, ":"); ok && server != s.cfg.ServerName && !slices.Contains(servers, server) {
			servers = append(servers, server)
		}
	}
	if len(servers) == 0 {
		return mxerr.NotFound("No server to complete the invite to %s through", inv.RoomID)
	}
	uri := "/_matrix/federation/v1/exchange_third_party_invite/" + url.PathEscape(inv.RoomID)
	var last error
	for _, server := range servers {
		err := s.client.Call(ctx, "PUT", server, uri, &partial, nil)
		if err == nil {
			return nil
		}
		var fe *Error
		if errors.As(err, &fe) && fe.Status >= 400 && fe.Status < 500 && strings.HasPrefix(fe.Code, "M_") {
			// The resident server's verdict, for the identity server.
			last = &mxerr.Error{Status: fe.Status, Code: fe.Code, Message: fmt.Sprintf("%s: %s", server, fe.Message)}
			continue
		}
		if last == nil {
			last = &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: fmt.Sprintf("Could not reach %s to complete the invite", server)}
		}
	}
	return last
}

// exchangeReq is the partial m.room.member event of an
// /exchange_third_party_invite.
type exchangeReq struct {
	Type     string          `json:"type"`
	RoomID   string          `json:"room_id"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Content  exchangeContent `json:"content"`
}

type exchangeContent struct {
	Membership       string          `json:"membership"`
	ThirdPartyInvite *exchangeInvite `json:"third_party_invite"`
}

type exchangeInvite struct {
	DisplayName string          `json:"display_name,omitempty"`
	Signed      json.RawMessage `json:"signed"`
}

// exchangeThirdPartyInvite is PUT
// /_matrix/federation/v1/exchange_third_party_invite/{roomId}: the
// invitee's server, told the address is bound, asks us, in the room, to
// send the invite. Only the invitee's own server may ask; the invite is
// checked as one we complete ourselves (CompleteThirdPartyInvite) and
// sent as any invite of a user of that server is.
func (s *Service) exchangeThirdPartyInvite(r *httpx.Request, in *exchangeReq) (*httpx.Empty, error) {
	roomID := r.Param("roomId")
	switch {
	case in.Type != "m.room.member":
		return nil, mxerr.BadJSON("type must be m.room.member")
	case in.RoomID != roomID:
		return nil, mxerr.BadJSON("room_id does not match the path")
	case in.Content.Membership != "invite":
		return nil, mxerr.BadJSON("content.membership must be invite")
	case in.Content.ThirdPartyInvite == nil || len(in.Content.ThirdPartyInvite.Signed) == 0:
		return nil, mxerr.BadJSON("content.third_party_invite.signed is required")
	case !pdu.ValidUserID(in.Sender) || !pdu.ValidUserID(in.StateKey):
		return nil, mxerr.BadJSON("sender and state_key must be user IDs")
	}
	if _, server, _ := strings.Cut(in.StateKey, ":"); server != r.Origin {
		return nil, mxerr.Forbidden("%s is not a user of server %s", in.StateKey, r.Origin)
	}
	if !s.rooms.ServerAllowed(roomID, r.Origin) {
		return nil, mxerr.Forbidden("Server %s is denied by the room's server ACL", r.Origin)
	}
	_, err := s.rooms.CompleteThirdPartyInvite(r.Context(), roomID, in.Sender, in.StateKey, in.Content.ThirdPartyInvite.Signed, s.checkThirdPartyKey)
	if errors.Is(err, rooms.ErrNotInRoom) {
		return nil, mxerr.NotFound("This server is not in the room")
	}
	return &httpx.Empty{}, err
}

// checkThirdPartyKey asks the identity server at key's validity URL
// whether the key still stands.
func (s *Service) checkThirdPartyKey(ctx context.Context, key pdu.ThirdPartyKey) error {
	if s.cfg.Identity == nil {
		return mxerr.Forbidden("This server cannot check the invite's key")
	}
	valid, err := s.cfg.Identity.KeyValid(ctx, key.KeyValidityURL, key.PublicKey)
	if e, ok := mxerr.As(err); ok && e.Status >= 500 {
		return &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "The invite's key could not be checked with its identity server"}
	}
	if err != nil {
		// Its refusal, a URL the guard refuses: the key is not confirmed.
		why := "refused"
		if e, ok := mxerr.As(err); ok {
			why = e.Message
		}
		return mxerr.Forbidden("The identity server did not confirm the invite's key: %s", why)
	}
	if !valid {
		return mxerr.Forbidden("The identity server no longer vouches for the invite's key")
	}
	return nil
}
