package syncapi

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"hearth/server/filter"
	"hearth/server/httpx"
	"hearth/server/keys"
	"hearth/server/mxerr"
	"hearth/server/rooms"
	"hearth/store"
)

// maxTimeout bounds a long-poll, so a client cannot hold a connection
// forever.
const maxTimeout = 5 * time.Minute

// API serves /sync and the endpoints whose changes it delivers.
type API struct {
	store    *store.Store
	rooms    *rooms.Service
	notifier *Notifier
	typing   *Typing
	presence *Presence
	keys     *keys.Service

	// SendEDU, when set, carries local users' typing, receipts, presence
	// and to-device messages to other servers.
	SendEDU SendEDU

	mu      sync.Mutex                    // guards members
	members map[string]*rooms.MemberCache // by user and device: lazy-loaded members sent
}

// New returns the sync API; presence can be turned off by the operator.
// ks answers the end-to-end encryption parts of a sync.
func New(st *store.Store, rs *rooms.Service, n *Notifier, presence bool, ks *keys.Service) *API {
	a := &API{store: st, rooms: rs, notifier: n, keys: ks, members: map[string]*rooms.MemberCache{}}
	a.typing = NewTyping(func(roomID string) {
		if members, err := rs.MemberIDs(roomID); err == nil {
			n.Wake(members)
		}
	})
	a.typing.expired = func(roomID, userID string) { a.federateTyping(roomID, userID, false) }
	a.presence = NewPresence(presence, func(userID string) {
		if peers, err := rs.SharedUsers(userID); err == nil {
			n.Wake(append(peers, userID))
		}
		a.federatePresence(userID)
	})
	return a
}

// Routes is the route table of the spec's "Syncing" and "Filtering".
func (a *API) Routes() []httpx.Route {
	return append(a.accountDataRoutes(), []httpx.Route{
		{Method: "GET", Path: "/v3/sync", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.sync)},
		{Method: "POST", Path: "/v3/user/{userId}/filter", Auth: httpx.UserAuth, Handler: a.createFilter},
		{Method: "GET", Path: "/v3/user/{userId}/filter/{filterId}", Auth: httpx.UserAuth, Handler: a.getFilter},
		{Method: "PUT", Path: "/v3/rooms/{roomId}/typing/{userId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putTyping)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.postReceipt)},
		{Method: "POST", Path: "/v3/rooms/{roomId}/read_markers", Auth: httpx.UserAuth, Handler: httpx.JSON(a.postReadMarkers)},
		{Method: "PUT", Path: "/v3/sendToDevice/{eventType}/{txnId}", Auth: httpx.UserAuth, Handler: httpx.JSON(a.sendToDevice)},
		{Method: "GET", Path: "/v3/presence/{userId}/status", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getPresence)},
		{Method: "PUT", Path: "/v3/presence/{userId}/status", Auth: httpx.UserAuth, Handler: httpx.JSON(a.putPresence)},
	}...)
}

type syncResp struct {
	NextBatch   string           `json:"next_batch"`
	Rooms       *rooms.SyncRooms `json:"rooms,omitempty"`
	AccountData *eventList       `json:"account_data,omitempty"`
	ToDevice    *toDeviceList    `json:"to_device,omitempty"`
	Presence    *presenceList    `json:"presence,omitempty"`
	deviceListFields
}

// eventList is a sync section of non-room events.
type eventList struct {
	Events []accountDataEvent `json:"events"`
}

type accountDataEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// sync is GET /sync. It answers at once when anything changed since the
// token (or on an initial sync); otherwise it waits on the notifier, up to
// timeout, without polling.
func (a *API) sync(r *httpx.Request) (*syncResp, error) {
	timeout := time.Duration(0)
	if v := r.Query("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, mxerr.InvalidParam("timeout must be a non-negative number of milliseconds")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxTimeout)
	}
	var since Token
	initial := r.Query("since") == ""
	if !initial {
		var err error
		if since, err = ParseToken(r.Query("since"), a.notifier.Latest()); err != nil {
			return nil, err
		}
	}
	f, err := a.loadFilter(r, r.Query("filter"))
	if err != nil {
		return nil, err
	}
	req := &rooms.SyncRequest{
		UserID: r.Principal.UserID, DeviceID: r.Principal.DeviceID, Since: since.Pos,
		FullState: r.Query("full_state") == "true", TimelineLimit: f.TimelineLimit(10), RoomAllowed: f.RoomAllowed,
	}
	if f.Room != nil {
		req.Timeline, req.IncludeLeave = f.Room.Timeline, f.Room.IncludeLeave
		req.ThreadCounts = f.Room.Timeline != nil && f.Room.Timeline.UnreadThreadNotifications
		req.State, req.Ephemeral = f.StateFilter(), f.EphemeralFilter()
		req.LazyMembers = f.Room.State != nil && f.Room.State.LazyLoadMembers
		if req.LazyMembers && !f.Room.State.IncludeRedundantMembers {
			req.Sent = a.memberCache(r.Principal, initial)
		}
	}
	switch sp := r.Query("set_presence"); sp {
	case "", "online":
		a.presence.Set(r.Principal.UserID, "online", nil, true)
	case "unavailable":
		a.presence.Set(r.Principal.UserID, "unavailable", nil, true)
	case "offline":
		// The client does not want to be shown online: no change.
	default:
		return nil, mxerr.InvalidParam("set_presence must be online, offline or unavailable")
	}
	if !initial {
		if err := a.ackToDevice(r.Principal, since.Pos); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		if req.Ignored, err = a.ignored(r.Principal.Localpart); err != nil {
			return nil, err
		}
		gen := a.notifier.Gen(req.UserID)
		req.Upto = a.notifier.Latest()
		typingSerial, presenceSerial := a.typing.Serial(), a.presence.Serial()
		rs, err := a.rooms.Sync(req)
		if err != nil {
			return nil, err
		}
		resp := &syncResp{NextBatch: Token{Pos: max(req.Upto, since.Pos), Typing: typingSerial, Presence: presenceSerial}.String()}
		if err := a.addAccountData(r, req, f, rs, resp); err != nil {
			return nil, err
		}
		if err := a.addTyping(req, f, since.Typing, typingSerial, initial, rs); err != nil {
			return nil, err
		}
		if resp.ToDevice, err = a.pendingToDevice(r.Principal, since.Pos, req.Upto); err != nil {
			return nil, err
		}
		if err := a.addDeviceLists(r.Principal, since.Pos, req.Upto, initial, resp); err != nil {
			return nil, err
		}
		if resp.Presence, err = a.presenceSince(req.UserID, since.Presence, presenceSerial, f.Presence, rs); err != nil {
			return nil, err
		}
		if !rs.Empty() {
			resp.Rooms = rs
		}
		remaining := time.Until(deadline)
		if initial || req.FullState || resp.Rooms != nil || resp.AccountData != nil || resp.ToDevice != nil || resp.Presence != nil || resp.DeviceLists != nil || remaining <= 0 {
			return resp, nil
		}
		if !a.notifier.Wait(r.Context(), req.UserID, gen, remaining) {
			return resp, nil // timed out (or shutting down) with nothing new
		}
	}
}

// addAccountData adds the account data changed in (Since, Upto]: global
// to the response, per room to the rooms the user is joined to.
func (a *API) addAccountData(r *httpx.Request, req *rooms.SyncRequest, f *filter.Filter, rs *rooms.SyncRooms, resp *syncResp) error {
	var changed []store.AccountData
	err := a.store.View(func(tx *store.Tx) (err error) {
		changed, err = tx.AccountDataSince(r.Principal.Localpart, req.Since, req.Upto)
		return err
	})
	if err != nil || len(changed) == 0 {
		return err
	}
	joined, err := a.rooms.JoinedRooms(req.UserID)
	if err != nil {
		return err
	}
	for _, d := range changed {
		ev := accountDataEvent{Type: d.Type, Content: d.Content}
		if d.RoomID == "" {
			if !f.AccountData.Match(d.Type, req.UserID) {
				continue
			}
			if resp.AccountData == nil {
				resp.AccountData = &eventList{}
			}
			resp.AccountData.Events = append(resp.AccountData.Events, ev)
			continue
		}
		if !slices.Contains(joined, d.RoomID) || !req.RoomAllowed(d.RoomID) || !f.RoomAccountDataFilter().Match(d.RoomID, d.Type, req.UserID, d.Content) {
			continue
		}
		jr := joinedRoom(rs, d.RoomID)
		if jr.AccountData == nil {
			jr.AccountData = &rooms.RawEvents{}
		}
		jr.AccountData.Events = append(jr.AccountData.Events, rooms.RawEvent{Type: d.Type, Content: d.Content})
	}
	return nil
}

// addTyping adds m.typing to the joined rooms whose typing users changed
// after the token's typing serial, up to upto (next_batch's).
func (a *API) addTyping(req *rooms.SyncRequest, f *filter.Filter, since, upto uint64, initial bool, rs *rooms.SyncRooms) error {
	joined, err := a.rooms.JoinedRooms(req.UserID)
	if err != nil {
		return err
	}
	for _, roomID := range joined {
		users, changed := a.typing.Changed(roomID, since, upto, initial)
		if !changed || !req.RoomAllowed(roomID) || !f.EphemeralFilter().Match(roomID, "m.typing", "", nil) {
			continue
		}
		jr := joinedRoom(rs, roomID)
		if jr.Ephemeral == nil {
			jr.Ephemeral = &rooms.RawEvents{}
		}
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, rooms.RawEvent{Type: "m.typing", Content: typingEvent(users)})
	}
	return nil
}

// memberCache returns the device's lazy-loading cache; an initial sync
// starts a new connection and so a new cache.
func (a *API) memberCache(p *httpx.Principal, initial bool) *rooms.MemberCache {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := p.UserID + "\x00" + p.DeviceID
	c := a.members[key]
	if c == nil || initial {
		c = rooms.NewMemberCache()
		a.members[key] = c
	}
	return c
}

// ignored reads the user's m.ignored_user_list.
func (a *API) ignored(localpart string) (map[string]bool, error) {
	var list struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	err := a.store.View(func(tx *store.Tx) error {
		d, err := tx.GetAccountData(localpart, "", "m.ignored_user_list")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err == nil {
			_ = json.Unmarshal(d.Content, &list)
		}
		return err
	})
	if err != nil || len(list.IgnoredUsers) == 0 {
		return nil, err
	}
	out := make(map[string]bool, len(list.IgnoredUsers))
	for u := range list.IgnoredUsers {
		out[u] = true
	}
	return out, nil
}

// joinedRoom returns the sync entry of a joined room, adding an empty one
// for a room with only ephemeral or account data changes.
func joinedRoom(rs *rooms.SyncRooms, roomID string) *rooms.JoinedRoom {
	if rs.Join == nil {
		rs.Join = map[string]*rooms.JoinedRoom{}
	}
	jr := rs.Join[roomID]
	if jr == nil {
		jr = &rooms.JoinedRoom{Timeline: rooms.Timeline{Events: []*rooms.ClientEvent{}}, State: rooms.EventList{Events: []*rooms.ClientEvent{}}}
		rs.Join[roomID] = jr
	}
	return jr
}

// loadFilter reads the filter parameter: inline JSON, or the ID of a
// filter the user uploaded.
func (a *API) loadFilter(r *httpx.Request, param string) (*filter.Filter, error) {
	if param == "" {
		return &filter.Filter{}, nil
	}
	js := []byte(param)
	if !strings.HasPrefix(strings.TrimSpace(param), "{") {
		err := a.store.View(func(tx *store.Tx) (err error) {
			js, err = tx.Filter(r.Principal.Localpart, param)
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, mxerr.NotFound("No such filter")
		}
		if err != nil {
			return nil, err
		}
	}
	f, err := filter.Parse(js)
	if err == nil {
		err = f.Validate()
	}
	if err != nil {
		return nil, mxerr.BadJSON("Invalid filter: %v", err)
	}
	return f, nil
}

type filterIDResp struct {
	FilterID string `json:"filter_id"`
}

// createFilter is POST /user/{userId}/filter.
func (a *API) createFilter(r *httpx.Request) (any, error) {
	if r.Param("userId") != r.Principal.UserID {
		return nil, mxerr.Forbidden("Cannot create filters for other users")
	}
	var f filter.Filter
	if err := httpx.DecodeJSON(r.Body(), &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, mxerr.BadJSON("Invalid filter: %v", err)
	}
	js := append([]byte(nil), r.Body()...)
	var id string
	err := a.store.Update(func(tx *store.Tx) (err error) {
		id, err = tx.AddFilter(r.Principal.Localpart, js)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &filterIDResp{FilterID: id}, nil
}

// getFilter is GET /user/{userId}/filter/{filterId}.
func (a *API) getFilter(r *httpx.Request) (any, error) {
	if r.Param("userId") != r.Principal.UserID {
		return nil, mxerr.Forbidden("Cannot read other users' filters")
	}
	f, err := a.loadFilter(r, r.Param("filterId"))
	if e, ok := mxerr.As(err); ok && e.Code == "M_BAD_JSON" {
		return nil, mxerr.NotFound("No such filter")
	}
	return f, err
}
