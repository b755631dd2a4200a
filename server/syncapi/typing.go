package syncapi

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
)

// maxTypingTimeout bounds how long one typing notification lasts.
const maxTypingTimeout = 2 * time.Minute

// Typing holds who is typing in which room. It lives in memory only:
// typing is ephemeral, and a restart forgetting it is what clients
// expect. Every change, including an expiry, moves the typing serial.
type Typing struct {
	mu       sync.Mutex // guards serial and rooms
	serial   uint64
	rooms    map[string]*roomTyping
	onChange func(roomID string) // wakes the room's members; called without mu
	// expired, when set, is told that a user's typing timed out; called
	// without mu.
	expired func(roomID, userID string)
}

type roomTyping struct {
	serial uint64               // the serial of the room's last change
	users  map[string]time.Time // user → when their typing expires
}

// NewTyping returns an empty typing state that calls onChange after each
// change of a room's typing users.
func NewTyping(onChange func(roomID string)) *Typing {
	return &Typing{rooms: map[string]*roomTyping{}, onChange: onChange}
}

// Serial returns the current typing serial.
func (t *Typing) Serial() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial
}

// Set starts (for timeout) or stops userID typing in roomID.
func (t *Typing) Set(roomID, userID string, typing bool, timeout time.Duration) {
	t.mu.Lock()
	rt := t.rooms[roomID]
	if rt == nil {
		rt = &roomTyping{users: map[string]time.Time{}}
		t.rooms[roomID] = rt
	}
	_, was := rt.users[userID]
	if typing {
		expiry := time.Now().Add(timeout)
		rt.users[userID] = expiry
		// The expiry stops the typing by itself, unless it was renewed.
		time.AfterFunc(timeout, func() { t.expire(roomID, userID, expiry) })
	} else {
		delete(rt.users, userID)
	}
	changed := was != typing
	if changed {
		t.serial++
		rt.serial = t.serial
	}
	t.mu.Unlock()
	if changed && t.onChange != nil {
		t.onChange(roomID)
	}
}

func (t *Typing) expire(roomID, userID string, expiry time.Time) {
	t.mu.Lock()
	rt := t.rooms[roomID]
	if rt == nil || !rt.users[userID].Equal(expiry) {
		t.mu.Unlock()
		return // renewed or stopped since
	}
	delete(rt.users, userID)
	t.serial++
	rt.serial = t.serial
	t.mu.Unlock()
	if t.onChange != nil {
		t.onChange(roomID)
	}
	if t.expired != nil {
		t.expired(roomID, userID)
	}
}

// Changed returns who is typing in roomID if that changed after serial
// since (on an initial sync: if anyone is typing), up to serial upto, the
// one the sync's next_batch carries: a change after it is left to the
// next sync, which would otherwise get it a second time.
func (t *Typing) Changed(roomID string, since, upto uint64, initial bool) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.rooms[roomID]
	if rt == nil || rt.serial > upto || (initial && len(rt.users) == 0) || (!initial && rt.serial <= since) {
		return nil, false
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	slices.Sort(users)
	return users, true
}

type typingReq struct {
	Typing  *bool `json:"typing"`
	Timeout int64 `json:"timeout"`
}

// putTyping is PUT /rooms/{roomId}/typing/{userId}.
func (a *API) putTyping(r *httpx.Request, in *typingReq) (*httpx.Empty, error) {
	if r.Param("userId") != r.Principal.UserID {
		return nil, mxerr.Forbidden("Cannot set another user's typing state")
	}
	if in.Typing == nil {
		return nil, mxerr.MissingParam("Missing typing")
	}
	if m, err := a.rooms.Membership(r.Principal.UserID, r.Param("roomId")); err != nil {
		return nil, err
	} else if m != "join" {
		return nil, mxerr.Forbidden("You are not joined to this room")
	}
	timeout := 30 * time.Second
	if in.Timeout > 0 {
		timeout = min(time.Duration(in.Timeout)*time.Millisecond, maxTypingTimeout)
	}
	a.typing.Set(r.Param("roomId"), r.Principal.UserID, *in.Typing, timeout)
	// Every call goes out, a renewal too: other servers time typing out
	// by themselves.
	a.federateTyping(r.Param("roomId"), r.Principal.UserID, *in.Typing)
	return &httpx.Empty{}, nil
}

func typingEvent(users []string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"user_ids": users})
	return b
}
