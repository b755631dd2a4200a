package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/server/rooms"
)

var _ rooms.Handshakes = (*Service)(nil)

// membershipRoutes are the join, leave, knock and invite handshakes.
func (s *Service) membershipRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v1/make_join/{roomId}/{userId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.makeJoin)},
		{Method: "PUT", Path: "/v2/send_join/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.sendJoin)},
		{Method: "PUT", Path: "/v1/send_join/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.sendJoinV1)},
		{Method: "PUT", Path: "/v1/send_leave/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.sendLeaveV1)},
		{Method: "GET", Path: "/v1/make_leave/{roomId}/{userId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.makeLeave)},
		{Method: "PUT", Path: "/v2/send_leave/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.sendLeave)},
		{Method: "GET", Path: "/v1/make_knock/{roomId}/{userId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.makeKnock)},
		{Method: "PUT", Path: "/v1/send_knock/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.sendKnock)},
		{Method: "PUT", Path: "/v2/invite/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.JSON(s.invite)},
		{Method: "PUT", Path: "/v1/invite/{roomId}/{eventId}", Auth: httpx.ServerAuth, Handler: httpx.NoBody(s.inviteV1)},
	}
}

// signer signs the events this server completes from templates.
func (s *Service) signer() pdu.Signer {
	return pdu.Signer{ServerName: s.cfg.ServerName, KeyID: s.cfg.KeyID, Key: s.cfg.Key}
}

type makeResp struct {
	RoomVersion string          `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

func (s *Service) makeMember(r *httpx.Request, membership string) (*makeResp, error) {
	versions := r.QueryAll("ver")
	if len(versions) == 0 {
		versions = []string{"1"} // the spec's default when ver is absent
	}
	v, t, err := s.rooms.MakeMember(r.Origin, r.Param("roomId"), r.Param("userId"), membership, versions)
	if err != nil {
		return nil, err
	}
	return &makeResp{RoomVersion: v, Event: t}, nil
}

// makeJoin is GET /_matrix/federation/v1/make_join/{roomId}/{userId}.
func (s *Service) makeJoin(r *httpx.Request) (*makeResp, error) { return s.makeMember(r, "join") }

// makeLeave is GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (s *Service) makeLeave(r *httpx.Request) (*makeResp, error) { return s.makeMember(r, "leave") }

// makeKnock is GET /_matrix/federation/v1/make_knock/{roomId}/{userId}.
func (s *Service) makeKnock(r *httpx.Request) (*makeResp, error) { return s.makeMember(r, "knock") }

type sendJoinResp struct {
	Origin         string            `json:"origin"`
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event,omitempty"`
	MembersOmitted bool              `json:"members_omitted"`
	ServersInRoom  []string          `json:"servers_in_room"`
}

// sendJoin is PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}:
// the state before the join and its auth chain, without most member
// events when the joiner asks for a partial state (omit_members).
func (s *Service) sendJoin(r *httpx.Request) (*sendJoinResp, error) {
	var omit bool
	switch r.Query("omit_members") {
	case "", "false":
	case "true":
		omit = true
	default:
		return nil, mxerr.InvalidParam("omit_members must be true or false")
	}
	return s.acceptJoin(r, omit)
}

func (s *Service) acceptJoin(r *httpx.Request, omitMembers bool) (*sendJoinResp, error) {
	a, err := s.rooms.AcceptJoin(r.Context(), r.Origin, r.Param("roomId"), r.Param("eventId"), r.Body(), omitMembers)
	if err != nil {
		return nil, err
	}
	resp := &sendJoinResp{Origin: s.cfg.ServerName, State: nonNil(a.State), AuthChain: nonNil(a.AuthChain),
		MembersOmitted: a.MembersOmitted, ServersInRoom: a.ServersInRoom}
	if !bytesEqualJSON(a.Event.JSON(), r.Body()) {
		resp.Event = a.Event.JSON() // countersigned for a restricted join
	}
	return resp, nil
}

// sendJoinV1 is the deprecated PUT /_matrix/federation/v1/send_join:
// the v2 answer with the full state (v1 has no omit_members) wrapped as
// the spec's [200, {...}].
func (s *Service) sendJoinV1(r *httpx.Request) ([]any, error) {
	resp, err := s.acceptJoin(r, false)
	if err != nil {
		return nil, err
	}
	return []any{200, resp}, nil
}

// sendLeaveV1 is the deprecated PUT /_matrix/federation/v1/send_leave.
func (s *Service) sendLeaveV1(r *httpx.Request) ([]any, error) {
	if _, err := s.sendLeave(r); err != nil {
		return nil, err
	}
	return []any{200, struct{}{}}, nil
}

// sendLeave is PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (s *Service) sendLeave(r *httpx.Request) (*httpx.Empty, error) {
	err := s.rooms.AcceptMember(r.Context(), r.Origin, r.Param("roomId"), r.Param("eventId"), "leave", r.Body())
	return &httpx.Empty{}, err
}

type sendKnockResp struct {
	KnockRoomState []rooms.StrippedEvent `json:"knock_room_state"`
}

// sendKnock is PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
func (s *Service) sendKnock(r *httpx.Request) (*sendKnockResp, error) {
	roomID := r.Param("roomId")
	if err := s.rooms.AcceptMember(r.Context(), r.Origin, roomID, r.Param("eventId"), "knock", r.Body()); err != nil {
		return nil, err
	}
	st, err := s.rooms.StrippedState(roomID)
	return &sendKnockResp{KnockRoomState: st}, err
}

type inviteReq struct {
	Event       json.RawMessage   `json:"event"`
	RoomVersion string            `json:"room_version"`
	InviteState []json.RawMessage `json:"invite_room_state"`
}

type inviteResp struct {
	Event json.RawMessage `json:"event"`
}

// invite is PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: a
// remote room invites one of our users.
func (s *Service) invite(r *httpx.Request, in *inviteReq) (*inviteResp, error) {
	ev, err := s.rooms.ReceiveInvite(r.Context(), r.Origin, r.Param("roomId"), r.Param("eventId"), in.RoomVersion, in.Event, in.InviteState)
	if err != nil {
		return nil, err
	}
	return &inviteResp{Event: ev}, nil
}

// inviteV1 is the deprecated PUT /_matrix/federation/v1/invite/{roomId}/{eventId},
// for rooms of versions 1 and 2, whose servers predate v2: the body is
// the event, the stripped state in its unsigned, and the answer is the
// spec's [200, {"event": ...}].
func (s *Service) inviteV1(r *httpx.Request) ([]any, error) {
	var ev struct {
		Unsigned struct {
			InviteState []json.RawMessage `json:"invite_room_state"`
		} `json:"unsigned"`
	}
	if err := httpx.DecodeJSON(r.Body(), &ev); err != nil {
		return nil, err
	}
	body := slices.Clone(r.Body())
	signed, err := s.rooms.ReceiveInvite(r.Context(), r.Origin, r.Param("roomId"), r.Param("eventId"), "1", body, ev.Unsigned.InviteState)
	if err != nil {
		return nil, err
	}
	return []any{200, inviteResp{Event: signed}}, nil
}

// Join joins userID to a room on one of servers: make_join, complete and
// sign the template, send_join, then import the room from the response.
func (s *Service) Join(ctx context.Context, servers []string, roomID, userID string, content map[string]any) error {
	var errs []error
	for _, server := range servers {
		err := s.joinVia(ctx, server, roomID, userID, content)
		if err == nil {
			return nil
		}
		s.cfg.Log.Info("federation: join failed", "room", roomID, "via", server, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		var fe *Error
		if errors.As(err, &fe) && fe.Status == 403 {
			return mxerr.Forbidden("%s refused the join: %s", server, fe.Message)
		}
	}
	return &mxerr.Error{Status: 404, Code: "M_NOT_FOUND", Message: fmt.Sprintf("Could not join the room through any server: %v", errors.Join(errs...))}
}

func (s *Service) joinVia(ctx context.Context, server, roomID, userID string, content map[string]any) error {
	q := url.Values{"ver": pdu.SupportedVersions()}
	var made makeResp
	uri := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?" + q.Encode()
	if err := s.client.Call(ctx, "GET", server, uri, nil, &made); err != nil {
		return err
	}
	ev, err := s.complete(made, content)
	if err != nil {
		return err
	}
	var resp sendJoinResp // of the whole state: we send no omit_members
	uri = "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(ev.ID())
	if err := s.client.Call(ctx, "PUT", server, uri, json.RawMessage(ev.JSON()), &resp); err != nil {
		return err
	}
	join := ev.JSON()
	if len(resp.Event) > 0 {
		join = resp.Event // with the authorising server's signature
	}
	if resident, err := s.rooms.Resident(roomID); err == nil && resident {
		// A restricted join that a member elsewhere authorised, in a room
		// we are in: the join is one more event for us to take in.
		if _, err := s.rooms.ReceivePDU(ctx, server, join); err != nil {
			if errors.Is(err, rooms.ErrRejected) {
				return mxerr.Forbidden("The join %s authorised is not allowed here: %v", server, err)
			}
			return err
		}
		return nil
	}
	if resp.MembersOmitted {
		// We never ask for a partial state (omit_members): taken for the
		// whole, it would leave out members whose events we must then
		// refuse, and we have no resync to complete it.
		return fmt.Errorf("%s left member events out of the room's state unasked", server)
	}
	return s.rooms.ImportJoin(ctx, server, roomID, made.RoomVersion, join, resp.State, resp.AuthChain)
}

// complete fills a template's content with ours (its membership and
// authoriser kept) and signs it.
func (s *Service) complete(made makeResp, content map[string]any) (*pdu.Event, error) {
	if !pdu.Known(made.RoomVersion) {
		return nil, fmt.Errorf("unsupported room version %q", made.RoomVersion)
	}
	var t map[string]json.RawMessage
	if err := json.Unmarshal(made.Event, &t); err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	var tc map[string]any
	_ = json.Unmarshal(t["content"], &tc)
	merged := map[string]any{}
	for k, v := range content {
		merged[k] = v
	}
	for _, k := range []string{"membership", "join_authorised_via_users_server"} {
		if v, ok := tc[k]; ok {
			merged[k] = v
		}
	}
	t["content"], _ = json.Marshal(merged)
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return pdu.BuildFromTemplate(made.RoomVersion, raw, s.signer(), time.Now())
}

// Leave leaves, or rejects an invite to, a room through one of servers,
// and returns the leave event as sent.
func (s *Service) Leave(ctx context.Context, servers []string, roomID, userID string, content map[string]any) ([]byte, error) {
	var errs []error
	for _, server := range servers {
		var made makeResp
		uri := "/_matrix/federation/v1/make_leave/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID)
		err := s.client.Call(ctx, "GET", server, uri, nil, &made)
		var ev *pdu.Event
		if err == nil {
			ev, err = s.complete(made, content)
		}
		if err == nil {
			uri = "/_matrix/federation/v2/send_leave/" + url.PathEscape(roomID) + "/" + url.PathEscape(ev.ID())
			err = s.client.Call(ctx, "PUT", server, uri, json.RawMessage(ev.JSON()), &struct{}{})
		}
		if err == nil {
			return ev.JSON(), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	return nil, errors.Join(errs...)
}

// Knock knocks on a room through one of servers: make_knock, complete
// and sign the template, send_knock. It returns the knock event, the
// room version and the room's stripped state.
func (s *Service) Knock(ctx context.Context, servers []string, roomID, userID string, content map[string]any) ([]byte, string, []json.RawMessage, error) {
	var errs []error
	for _, server := range servers {
		q := url.Values{"ver": pdu.SupportedVersions()}
		var made makeResp
		uri := "/_matrix/federation/v1/make_knock/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?" + q.Encode()
		err := s.client.Call(ctx, "GET", server, uri, nil, &made)
		var ev *pdu.Event
		if err == nil {
			ev, err = s.complete(made, content)
		}
		var resp struct {
			KnockRoomState []json.RawMessage `json:"knock_room_state"`
		}
		if err == nil {
			uri = "/_matrix/federation/v1/send_knock/" + url.PathEscape(roomID) + "/" + url.PathEscape(ev.ID())
			err = s.client.Call(ctx, "PUT", server, uri, json.RawMessage(ev.JSON()), &resp)
		}
		if err == nil {
			return ev.JSON(), made.RoomVersion, resp.KnockRoomState, nil
		}
		var fe *Error
		if errors.As(err, &fe) && fe.Status == 403 {
			return nil, "", nil, mxerr.Forbidden("%s refused the knock: %s", server, fe.Message)
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	return nil, "", nil, &mxerr.Error{Status: 404, Code: "M_NOT_FOUND", Message: fmt.Sprintf("Could not knock through any server: %v", errors.Join(errs...))}
}

// Invite has the invitee's server countersign our invite event.
func (s *Service) Invite(ctx context.Context, version string, ev []byte, stripped []json.RawMessage) ([]byte, error) {
	var head struct {
		RoomID   string `json:"room_id"`
		StateKey string `json:"state_key"`
	}
	if err := json.Unmarshal(ev, &head); err != nil {
		return nil, err
	}
	parsed, err := pdu.Parse(version, ev, false)
	if err != nil {
		return nil, err
	}
	var resp inviteResp
	uri := "/_matrix/federation/v2/invite/" + url.PathEscape(head.RoomID) + "/" + url.PathEscape(parsed.ID())
	in := inviteReq{Event: ev, RoomVersion: version, InviteState: nonNil(stripped)}
	_, invitee, _ := strings.Cut(head.StateKey, ":")
	if err := s.client.Call(ctx, "PUT", invitee, uri, &in, &resp); err != nil {
		return nil, err
	}
	return resp.Event, nil
}

func nonNil(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}

// bytesEqualJSON reports whether two JSON encodings are byte-equal after
// canonicalisation.
func bytesEqualJSON(a, b []byte) bool {
	ca, err1 := pdu.CanonicalJSON(a)
	cb, err2 := pdu.CanonicalJSON(b)
	return err1 == nil && err2 == nil && string(ca) == string(cb)
}
