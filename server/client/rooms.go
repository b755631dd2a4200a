package client

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"hearth/server/filter"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
	"hearth/store"
)

// roomRoutes is the route table of the spec's "Rooms" and "Room
// membership" areas.
func (a *API) roomRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "POST", Path: "/v3/createRoom", Auth: httpx.UserAuth, Handler: httpx.JSON(a.createRoom)},
		{Method: "GET", Path: "/v3/joined_rooms", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.joinedRooms)},

		{Method: "PUT", Path: "/v3/rooms/{roomId}/send/{eventType}/{txnId}", Auth: httpx.UserAuth, Handler: a.sendMessage},
		{Method: "PUT", Path: "/v3/rooms/{roomId}/state/{eventType}", Auth: httpx.UserAuth, Handler: a.putState},
		{Method: "PUT", Path: "/v3/rooms/{roomId}/state/{eventType}/{stateKey}", Auth: httpx.UserAuth, Handler: a.putState},
		{Method: "GET", Path: "/v3/rooms/{roomId}/state", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getState)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/state/{eventType}", Auth: httpx.UserAuth, Handler: a.getStateEvent},
		{Method: "GET", Path: "/v3/rooms/{roomId}/state/{eventType}/{stateKey}", Auth: httpx.UserAuth, Handler: a.getStateEvent},
		{Method: "GET", Path: "/v3/rooms/{roomId}/event/{eventId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getEvent)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/messages", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.messages)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/context/{eventId}", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.eventContext)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/members", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.members)},
		{Method: "GET", Path: "/v3/rooms/{roomId}/joined_members", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.joinedMembers)},

		{Method: "POST", Path: "/v3/rooms/{roomId}/invite", Auth: httpx.UserAuth, Handler: httpx.JSON(a.invite)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/join", Auth: httpx.UserAuth, Handler: httpx.JSON(a.join)},
		{Method: "POST", Path: "/v3/join/{roomIdOrAlias}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.join)},
		{Method: "POST", Path: "/v3/knock/{roomIdOrAlias}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.knock)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/leave", Auth: httpx.UserAuth, Handler: httpx.JSON(a.leave)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/forget", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.forget)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/kick", Auth: httpx.UserAuth, Handler: httpx.JSON(a.kick)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/ban", Auth: httpx.UserAuth, Handler: httpx.JSON(a.ban)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/unban", Auth: httpx.UserAuth, Handler: httpx.JSON(a.unban)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/upgrade", Auth: httpx.UserAuth, Handler: httpx.JSON(a.upgrade)},

		{Method: "POST", Path: "/v3/rooms/{roomId}/report/{eventId}", Auth: httpx.UserAuth, Limit: a.reportIP, Handler: httpx.JSON(a.reportEvent)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/report", Auth: httpx.UserAuth, Limit: a.reportIP, Handler: httpx.JSON(a.reportRoom)},

		{Method: "GET", Path: "/v1/rooms/{roomId}/timestamp_to_event", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.timestampToEvent)},

		{Method: "POST", Path: "/v3/user_directory/search", Auth: httpx.UserAuth, Handler: httpx.JSON(a.searchUsers)},
	}
}

// timestampToEvent is GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.
func (a *API) timestampToEvent(r *httpx.Request) (*rooms.EventAtTime, error) {
	ts, err := strconv.ParseInt(r.Query("ts"), 10, 64)
	if err != nil {
		return nil, mxerr.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := r.Query("dir")
	if dir != "f" && dir != "b" {
		return nil, mxerr.InvalidParam("dir must be f or b")
	}
	return a.rooms.EventNear(r.Context(), r.Principal.UserID, r.Param("roomId"), ts, dir == "f")
}

type upgradeReq struct {
	NewVersion         string   `json:"new_version"`
	AdditionalCreators []string `json:"additional_creators"`
}

type upgradeResp struct {
	ReplacementRoom string `json:"replacement_room"`
}

// upgrade is POST /rooms/{roomId}/upgrade.
func (a *API) upgrade(r *httpx.Request, in *upgradeReq) (*upgradeResp, error) {
	if in.NewVersion == "" {
		return nil, mxerr.MissingParam("Missing new_version")
	}
	id, err := a.rooms.Upgrade(r.Param("roomId"), r.Principal.UserID, in.NewVersion, a.profileOf(r.Principal.Localpart), in.AdditionalCreators)
	if err != nil {
		return nil, err
	}
	return &upgradeResp{ReplacementRoom: id}, nil
}

type createRoomReq struct {
	Visibility         string                     `json:"visibility"`
	RoomAliasName      string                     `json:"room_alias_name"`
	Name               string                     `json:"name"`
	Topic              string                     `json:"topic"`
	Invite             []string                   `json:"invite"`
	Invite3PID         []invite3PID               `json:"invite_3pid"`
	RoomVersion        string                     `json:"room_version"`
	CreationContent    map[string]json.RawMessage `json:"creation_content"`
	InitialState       []rooms.StateDraft         `json:"initial_state"`
	Preset             string                     `json:"preset"`
	IsDirect           bool                       `json:"is_direct"`
	PowerLevelOverride map[string]json.RawMessage `json:"power_level_content_override"`
}

type roomIDResp struct {
	RoomID string `json:"room_id"`
}

// createRoom is POST /createRoom.
func (a *API) createRoom(r *httpx.Request, in *createRoomReq) (*roomIDResp, error) {
	if in.Visibility != "" && in.Visibility != "public" && in.Visibility != "private" {
		return nil, mxerr.InvalidParam("visibility must be public or private")
	}
	for _, u := range in.Invite {
		if !validUserID(u) {
			return nil, mxerr.InvalidParam("Invalid user ID %q in invite", u)
		}
	}
	for i := range in.Invite3PID {
		if err := in.Invite3PID[i].check(); err != nil {
			return nil, err
		}
	}
	id, err := a.rooms.CreateRoom(&rooms.CreateRequest{
		Creator: r.Principal.UserID, Version: in.RoomVersion, Preset: in.Preset, Visibility: in.Visibility,
		Name: in.Name, Topic: in.Topic, Invite: in.Invite, IsDirect: in.IsDirect, InitialState: in.InitialState,
		CreationContent: in.CreationContent, PowerLevelOverride: in.PowerLevelOverride,
		CreatorProfile: a.profileOf(r.Principal.Localpart), AliasName: in.RoomAliasName,
	})
	if err != nil {
		return nil, err
	}
	// As Synapse does: once the room exists, each address is invited as
	// /invite would, and a failure fails the request.
	for i := range in.Invite3PID {
		if err := a.inviteByAddress(r, id, &in.Invite3PID[i]); err != nil {
			return nil, err
		}
	}
	return &roomIDResp{RoomID: id}, nil
}

func validUserID(u string) bool {
	lp, server, ok := strings.Cut(strings.TrimPrefix(u, "@"), ":")
	return strings.HasPrefix(u, "@") && ok && lp != "" && server != ""
}

// profileOf returns the displayname and avatar_url for member events.
func (a *API) profileOf(localpart string) map[string]string {
	u, err := a.acc.User(localpart)
	if err != nil {
		return nil
	}
	return map[string]string{"displayname": u.DisplayName, "avatar_url": u.AvatarURL}
}

type eventIDResp struct {
	EventID string `json:"event_id"`
}

// readContent reads an event content body: any JSON object.
func readContent(r *httpx.Request) (json.RawMessage, error) {
	// DecodeJSON has checked it is a JSON object; the event builder
	// canonicalises it, so the bytes need no decoding into a map.
	var raw json.RawMessage
	if err := httpx.DecodeJSON(r.Body(), &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// sendMessage is PUT /rooms/{roomId}/send/{eventType}/{txnId}: idempotent
// per device and transaction ID.
func (a *API) sendMessage(r *httpx.Request) (any, error) {
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	id, err := a.rooms.Send(r.Param("roomId"), &rooms.Draft{
		Sender: r.Principal.UserID, Type: r.Param("eventType"), Content: content,
		Txn: &store.TxnKey{Localpart: r.Principal.Localpart, DeviceID: r.Principal.DeviceID, TxnID: r.Param("txnId")},
	})
	if err != nil {
		return nil, err
	}
	return &eventIDResp{EventID: id}, nil
}

// putState is PUT /rooms/{roomId}/state/{eventType}[/{stateKey}].
func (a *API) putState(r *httpx.Request) (any, error) {
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	key := r.Param("stateKey")
	id, err := a.rooms.Send(r.Param("roomId"), &rooms.Draft{
		Sender: r.Principal.UserID, Type: r.Param("eventType"), StateKey: &key, Content: content,
	})
	if err != nil {
		return nil, err
	}
	return &eventIDResp{EventID: id}, nil
}

// getState is GET /rooms/{roomId}/state.
func (a *API) getState(r *httpx.Request) ([]*rooms.ClientEvent, error) {
	return a.rooms.State(r.Principal.UserID, r.Param("roomId"))
}

// getStateEvent is GET /rooms/{roomId}/state/{eventType}[/{stateKey}]:
// the content, or with format=event the whole event.
func (a *API) getStateEvent(r *httpx.Request) (any, error) {
	ev, err := a.rooms.StateEvent(r.Principal.UserID, r.Param("roomId"), r.Param("eventType"), r.Param("stateKey"))
	if err != nil {
		return nil, err
	}
	if r.Query("format") == "event" {
		return ev, nil
	}
	return ev.Content, nil
}

// getEvent is GET /rooms/{roomId}/event/{eventId}.
func (a *API) getEvent(r *httpx.Request) (*rooms.ClientEvent, error) {
	return a.rooms.Event(r.Principal.UserID, r.Principal.DeviceID, r.Param("roomId"), r.Param("eventId"))
}

// messages is GET /rooms/{roomId}/messages.
func (a *API) messages(r *httpx.Request) (*rooms.Page, error) {
	limit := 10
	if v := r.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, 1000)
	}
	dir := r.Query("dir")
	if dir == "" {
		dir = "f" // Synapse's default; the spec asks clients to send it
	}
	if dir != "b" && dir != "f" {
		return nil, mxerr.InvalidParam("dir must be b or f")
	}
	f, err := filter.ParseRoomEvent(r.Query("filter"))
	if err != nil {
		return nil, mxerr.InvalidParam("filter is not a valid RoomEventFilter")
	}
	if f.Limit != nil && *f.Limit >= 0 && r.Query("limit") == "" {
		limit = min(*f.Limit, 1000)
	}
	return a.rooms.Messages(r.Principal.UserID, r.Param("roomId"), rooms.MessagesQuery{
		From: r.Query("from"), To: r.Query("to"), Backward: dir == "b", Limit: limit, Filter: f,
		DeviceID: r.Principal.DeviceID,
	})
}

// eventContext is GET /rooms/{roomId}/context/{eventId}.
func (a *API) eventContext(r *httpx.Request) (*rooms.Context, error) {
	limit := 10
	if v := r.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, 100)
	}
	f, err := filter.ParseRoomEvent(r.Query("filter"))
	if err != nil {
		return nil, mxerr.InvalidParam("filter is not a valid RoomEventFilter")
	}
	return a.rooms.EventContext(r.Principal.UserID, r.Param("roomId"), r.Param("eventId"), limit, f)
}

type joinedRoomsResp struct {
	JoinedRooms []string `json:"joined_rooms"`
}

// joinedRooms is GET /joined_rooms.
func (a *API) joinedRooms(r *httpx.Request) (*joinedRoomsResp, error) {
	ids, err := a.rooms.JoinedRooms(r.Principal.UserID)
	return &joinedRoomsResp{JoinedRooms: ids}, err
}

type membersResp struct {
	Chunk []*rooms.ClientEvent `json:"chunk"`
}

// members is GET /rooms/{roomId}/members with membership/not_membership.
func (a *API) members(r *httpx.Request) (*membersResp, error) {
	ms, err := a.rooms.Members(r.Principal.UserID, r.Param("roomId"), r.Query("at"))
	if err != nil {
		return nil, err
	}
	want, notWant := r.Query("membership"), r.Query("not_membership")
	resp := &membersResp{Chunk: []*rooms.ClientEvent{}}
	for _, m := range ms {
		if (want != "" && m.Membership != want) || (notWant != "" && m.Membership == notWant) {
			continue
		}
		resp.Chunk = append(resp.Chunk, m.Event)
	}
	slices.SortFunc(resp.Chunk, func(x, y *rooms.ClientEvent) int { return strings.Compare(*x.StateKey, *y.StateKey) })
	return resp, nil
}

type joinedMember struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

type joinedMembersResp struct {
	Joined map[string]joinedMember `json:"joined"`
}

// joinedMembers is GET /rooms/{roomId}/joined_members: for current
// members only, as the spec says.
func (a *API) joinedMembers(r *httpx.Request) (*joinedMembersResp, error) {
	if m, err := a.rooms.Membership(r.Principal.UserID, r.Param("roomId")); err != nil {
		return nil, err
	} else if m != "join" {
		return nil, mxerr.Forbidden("You are not joined to this room")
	}
	ms, err := a.rooms.Members(r.Principal.UserID, r.Param("roomId"), "")
	if err != nil {
		return nil, err
	}
	resp := &joinedMembersResp{Joined: map[string]joinedMember{}}
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		_ = json.Unmarshal(m.Event.Content, &c)
		resp.Joined[m.UserID] = joinedMember{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
	}
	return resp, nil
}

type memberReq struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

func (a *API) changeMember(r *httpx.Request, roomID, target, membership, reason string) (*roomIDResp, error) {
	c := &rooms.MemberChange{Sender: r.Principal.UserID, Target: target, Membership: membership, Reason: reason}
	if membership == "join" || membership == "invite" {
		if lp, ok := a.acc.LocalpartOf(target); ok {
			c.Profile = a.profileOf(lp)
		}
	}
	if _, err := a.rooms.ChangeMembership(roomID, c); err != nil {
		return nil, err
	}
	return &roomIDResp{RoomID: roomID}, nil
}

func needUser(in *memberReq) error {
	if in.UserID == "" {
		return mxerr.MissingParam("Missing user_id")
	}
	if !validUserID(in.UserID) {
		return mxerr.InvalidParam("Invalid user_id")
	}
	return nil
}

type inviteReq struct {
	memberReq
	invite3PID
}

// invite is POST /rooms/{roomId}/invite, of a user ID or, in its other
// form, of a third-party identifier (thirdparty.go).
func (a *API) invite(r *httpx.Request, in *inviteReq) (*httpx.Empty, error) {
	if in.UserID == "" && (in.Medium != "" || in.Address != "") {
		return &httpx.Empty{}, a.inviteByAddress(r, r.Param("roomId"), &in.invite3PID)
	}
	if err := needUser(&in.memberReq); err != nil {
		return nil, err
	}
	_, err := a.changeMember(r, r.Param("roomId"), in.UserID, "invite", in.Reason)
	return &httpx.Empty{}, err
}

// join is POST /rooms/{roomId}/join and POST /join/{roomIdOrAlias}. A
// room this server is not in is joined over federation through the
// servers the client names (via, server_name), the alias's, the inviter's
// or the room ID's.
func (a *API) join(r *httpx.Request, in *memberReq) (*roomIDResp, error) {
	roomID := r.Param("roomId")
	via := append(r.QueryAll("via"), r.QueryAll("server_name")...)
	if roomID == "" {
		t, err := a.roomTarget(r, r.Param("roomIdOrAlias"))
		if err != nil {
			return nil, err
		}
		roomID, via = t.RoomID, append(via, t.Servers...)
	}
	if !strings.HasPrefix(roomID, "!") {
		return nil, mxerr.InvalidParam("Invalid room ID")
	}
	c := &rooms.MemberChange{Sender: r.Principal.UserID, Target: r.Principal.UserID, Reason: in.Reason, Profile: a.profileOf(r.Principal.Localpart), Via: via}
	var extra map[string]json.RawMessage
	if json.Unmarshal(r.Body(), &extra) == nil {
		delete(extra, "reason")
		delete(extra, "third_party_signed")
		c.Extra = extra
	}
	if _, err := a.rooms.Join(roomID, c); err != nil {
		return nil, err
	}
	return &roomIDResp{RoomID: roomID}, nil
}

// knock is POST /knock/{roomIdOrAlias} (room versions 7 and later).
func (a *API) knock(r *httpx.Request, in *memberReq) (*roomIDResp, error) {
	t, err := a.roomTarget(r, r.Param("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t.RoomID, "!") {
		return nil, mxerr.InvalidParam("Invalid room ID")
	}
	via := append(append(r.QueryAll("via"), r.QueryAll("server_name")...), t.Servers...)
	c := &rooms.MemberChange{Sender: r.Principal.UserID, Target: r.Principal.UserID, Membership: "knock", Reason: in.Reason, Via: via}
	if _, err := a.rooms.Knock(t.RoomID, c); err != nil {
		return nil, err
	}
	return &roomIDResp{RoomID: t.RoomID}, nil
}

func (a *API) roomExists(roomID string) (bool, error) {
	_, err := a.rooms.Version(roomID)
	return err == nil, err
}

// leave is POST /rooms/{roomId}/leave.
func (a *API) leave(r *httpx.Request, in *memberReq) (*httpx.Empty, error) {
	_, err := a.changeMember(r, r.Param("roomId"), r.Principal.UserID, "leave", in.Reason)
	return &httpx.Empty{}, err
}

// forget is POST /rooms/{roomId}/forget.
func (a *API) forget(r *httpx.Request) (*httpx.Empty, error) {
	return &httpx.Empty{}, a.rooms.Forget(r.Principal.UserID, r.Param("roomId"))
}

// kick is POST /rooms/{roomId}/kick.
func (a *API) kick(r *httpx.Request, in *memberReq) (*httpx.Empty, error) {
	if err := needUser(in); err != nil {
		return nil, err
	}
	if m, err := a.rooms.Membership(in.UserID, r.Param("roomId")); err == nil && m != "join" && m != "invite" && m != "knock" {
		return nil, mxerr.Forbidden("The user is not in the room")
	}
	_, err := a.changeMember(r, r.Param("roomId"), in.UserID, "leave", in.Reason)
	return &httpx.Empty{}, err
}

// ban is POST /rooms/{roomId}/ban.
func (a *API) ban(r *httpx.Request, in *memberReq) (*httpx.Empty, error) {
	if err := needUser(in); err != nil {
		return nil, err
	}
	_, err := a.changeMember(r, r.Param("roomId"), in.UserID, "ban", in.Reason)
	return &httpx.Empty{}, err
}

// unban is POST /rooms/{roomId}/unban.
func (a *API) unban(r *httpx.Request, in *memberReq) (*httpx.Empty, error) {
	if err := needUser(in); err != nil {
		return nil, err
	}
	if m, err := a.rooms.Membership(in.UserID, r.Param("roomId")); err == nil && m != "ban" {
		return nil, mxerr.Forbidden("The user is not banned")
	}
	_, err := a.changeMember(r, r.Param("roomId"), in.UserID, "leave", in.Reason)
	return &httpx.Empty{}, err
}
