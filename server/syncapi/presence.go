package syncapi

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"hearth/server/filter"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/rooms"
)

// idleAfter is how long an online user may go without activity before
// they show as unavailable.
const idleAfter = 5 * time.Minute

// Presence holds every local user's presence in memory: it changes on
// every sync, and after a restart everyone is offline until they next
// sync, which is what clients expect. Every change moves the presence
// serial.
type Presence struct {
	mu      sync.Mutex // guards serial and users
	serial  uint64
	users   map[string]*userPresence
	enabled bool
	// onChange wakes the syncs of everyone who shares a room with userID;
	// called without mu.
	onChange func(userID string)
}

type userPresence struct {
	state      string // online, unavailable, offline
	statusMsg  string
	lastActive time.Time
	serial     uint64      // the serial of the last change
	idle       *time.Timer // turns online into unavailable
	// remote is a user of another server, whose server says when they
	// are active and idle.
	remote          bool
	currentlyActive bool // of a remote user, as their server said
}

// NewPresence returns the presence of a server; disabled presence answers
// offline for everyone and never changes.
func NewPresence(enabled bool, onChange func(userID string)) *Presence {
	return &Presence{users: map[string]*userPresence{}, enabled: enabled, onChange: onChange}
}

// Serial returns the current presence serial.
func (p *Presence) Serial() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serial
}

// Set records userID's presence: state ("" keeps the current one, for a
// sync that only shows activity), a status message when msg is not nil,
// and activity now when active.
func (p *Presence) Set(userID, state string, msg *string, active bool) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	u := p.users[userID]
	if u == nil {
		u = &userPresence{state: "offline"}
		p.users[userID] = u
	}
	changed := false
	if state != "" && state != u.state {
		u.state, changed = state, true
	}
	if msg != nil && *msg != u.statusMsg {
		u.statusMsg, changed = *msg, true
	}
	if active {
		u.lastActive = time.Now()
		if u.idle != nil {
			u.idle.Stop()
		}
		if u.state == "online" {
			u.idle = time.AfterFunc(idleAfter, func() { p.goIdle(userID) })
		}
	}
	if changed {
		p.serial++
		u.serial = p.serial
	}
	p.mu.Unlock()
	if changed && p.onChange != nil {
		p.onChange(userID)
	}
}

// SetRemote records a remote user's presence as their server said it.
func (p *Presence) SetRemote(userID, state string, msg *string, lastActiveAgo int64, currentlyActive bool) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	u := p.users[userID]
	if u == nil {
		u = &userPresence{state: "offline", remote: true}
		p.users[userID] = u
	}
	changed := state != u.state || currentlyActive != u.currentlyActive
	u.state, u.currentlyActive = state, currentlyActive
	if msg != nil && *msg != u.statusMsg {
		u.statusMsg, changed = *msg, true
	}
	if lastActiveAgo > 0 {
		u.lastActive = time.Now().Add(-time.Duration(lastActiveAgo) * time.Millisecond)
	}
	if changed {
		p.serial++
		u.serial = p.serial
	}
	p.mu.Unlock()
	if changed && p.onChange != nil {
		p.onChange(userID)
	}
}

func (p *Presence) goIdle(userID string) {
	p.mu.Lock()
	u := p.users[userID]
	if u == nil || u.state != "online" || time.Since(u.lastActive) < idleAfter {
		p.mu.Unlock()
		return
	}
	u.state = "unavailable"
	p.serial++
	u.serial = p.serial
	p.mu.Unlock()
	if p.onChange != nil {
		p.onChange(userID)
	}
}

// PresenceContent is the content of an m.presence event.
type PresenceContent struct {
	Presence        string `json:"presence"`
	LastActiveAgo   int64  `json:"last_active_ago,omitempty"`
	StatusMsg       string `json:"status_msg,omitempty"`
	CurrentlyActive bool   `json:"currently_active"`
}

// Get returns a user's presence.
func (p *Presence) Get(userID string) PresenceContent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.contentLocked(p.users[userID])
}

func (p *Presence) contentLocked(u *userPresence) PresenceContent {
	if u == nil {
		return PresenceContent{Presence: "offline"}
	}
	c := PresenceContent{Presence: u.state, StatusMsg: u.statusMsg}
	if !u.lastActive.IsZero() {
		c.LastActiveAgo = max(1, time.Since(u.lastActive).Milliseconds())
		c.CurrentlyActive = u.state == "online" && time.Since(u.lastActive) < time.Minute
	}
	if u.remote {
		c.CurrentlyActive = u.currentlyActive
	}
	return c
}

// Changed returns the presence of those of users whose presence changed
// after serial since (every known one for since 0) and up to upto (the
// serial the sync's next_batch carries: later changes are the next
// sync's, which would otherwise get them twice), and of those of always
// whose presence is known at all: users the syncer newly shares a room
// with, who are new to it whether or not they changed.
func (p *Presence) Changed(users []string, since, upto uint64, always []string) map[string]PresenceContent {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]PresenceContent{}
	for _, id := range users {
		if u := p.users[id]; u != nil && u.serial > since && u.serial <= upto {
			out[id] = p.contentLocked(u)
		}
	}
	for _, id := range always {
		if u := p.users[id]; u != nil {
			out[id] = p.contentLocked(u)
		}
	}
	return out
}

type presenceReq struct {
	Presence  string  `json:"presence"`
	StatusMsg *string `json:"status_msg"`
}

// putPresence is PUT /presence/{userId}/status.
func (a *API) putPresence(r *httpx.Request, in *presenceReq) (*httpx.Empty, error) {
	if r.Param("userId") != r.Principal.UserID {
		return nil, mxerr.Forbidden("Cannot set another user's presence")
	}
	switch in.Presence {
	case "online", "offline", "unavailable":
	default:
		return nil, mxerr.InvalidParam("presence must be online, offline or unavailable")
	}
	a.presence.Set(r.Principal.UserID, in.Presence, in.StatusMsg, true)
	return &httpx.Empty{}, nil
}

// getPresence is GET /presence/{userId}/status: for yourself, and for
// users you share a room with.
func (a *API) getPresence(r *httpx.Request) (*PresenceContent, error) {
	target := r.Param("userId")
	if target != r.Principal.UserID {
		peers, err := a.rooms.SharedUsers(r.Principal.UserID)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(peers, target) {
			return nil, mxerr.Forbidden("You do not share a room with this user")
		}
	}
	c := a.presence.Get(target)
	return &c, nil
}

// newlyShared returns the users a sync's timelines show joining a room
// with the syncer, and everyone in the rooms the syncer joined.
func (a *API) newlyShared(userID string, rs *rooms.SyncRooms) ([]string, error) {
	var out []string
	for roomID, jr := range rs.Join {
		for _, ev := range jr.Timeline.Events {
			if ev.Type != "m.room.member" || ev.StateKey == nil {
				continue
			}
			var c struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(ev.Content, &c)
			if c.Membership != "join" {
				continue
			}
			if *ev.StateKey != userID {
				out = append(out, *ev.StateKey)
				continue
			}
			members, err := a.rooms.MemberIDs(roomID)
			if err != nil {
				return nil, err
			}
			out = append(out, members...)
		}
	}
	return out, nil
}

type presenceEvent struct {
	Type    string          `json:"type"`
	Sender  string          `json:"sender"`
	Content PresenceContent `json:"content"`
}

type presenceList struct {
	Events []presenceEvent `json:"events"`
}

// presenceSince returns the presence changes after since of the user
// themself and of everyone sharing a room with them, or nil.
func (a *API) presenceSince(userID string, since, upto uint64, f *filter.Event, rs *rooms.SyncRooms) (*presenceList, error) {
	if !a.presence.enabled {
		return nil, nil
	}
	peers, err := a.rooms.SharedUsers(userID)
	if err != nil {
		return nil, err
	}
	newPeers, err := a.newlyShared(userID, rs)
	if err != nil {
		return nil, err
	}
	changed := a.presence.Changed(append(peers, userID), since, upto, newPeers)
	if len(changed) == 0 {
		return nil, nil
	}
	out := &presenceList{}
	for id, c := range changed {
		if f.Match("m.presence", id) {
			out.Events = append(out.Events, presenceEvent{Type: "m.presence", Sender: id, Content: c})
		}
	}
	if len(out.Events) == 0 {
		return nil, nil
	}
	slices.SortFunc(out.Events, func(x, y presenceEvent) int {
		if x.Sender < y.Sender {
			return -1
		}
		return 1
	})
	return out, nil
}
