package rooms

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"hearth/store"
)

// memberCache remembers each room's joined members and servers at the
// state snapshot they were read at. Every local event and room EDU asks
// where to go, every inbound request whether its server is in the room,
// and a room may have thousands of members: reading them all costs a
// membership record per member, so when the room's state has moved on by
// a few events, the cached set follows the member events among them.
type memberCache struct {
	mu    sync.Mutex              // guards rooms
	rooms map[uint64]*roomMembers // by room NID
}

// roomMembers is a room's members at one snapshot. It is never changed
// once cached: readers share its slices.
type roomMembers struct {
	snap    uint64
	all     []string       // everyone with a member event, sorted
	users   []string       // the joined, sorted
	servers []string       // sorted
	count   map[string]int // joined members per server
}

// Bounds of the member cache: rooms kept, and how many state deltas a
// cached set may be behind before the room is read whole again.
const (
	memberCacheRooms = 4096
	memberCacheSteps = 64
)

// joinedMembers returns the user IDs of a room's joined members at its
// current state, sorted. The slice is shared: callers must not change it.
func (s *Service) joinedMembers(tx *store.Tx, room *store.Room) ([]string, error) {
	m, err := s.memberSets(tx, room)
	if err != nil {
		return nil, err
	}
	return slices.Clip(m.users), nil
}

// joinedServers returns the servers with a joined member in room, sorted.
// The slice is shared: callers must not change it.
func (s *Service) joinedServers(tx *store.Tx, room *store.Room) ([]string, error) {
	m, err := s.memberSets(tx, room)
	if err != nil {
		return nil, err
	}
	return slices.Clip(m.servers), nil
}

// memberSets returns room's members at its current state: cached,
// brought forward from a cached earlier snapshot, or read whole.
func (s *Service) memberSets(tx *store.Tx, room *store.Room) (*roomMembers, error) {
	s.members.mu.Lock()
	c := s.members.rooms[room.NID]
	s.members.mu.Unlock()
	if c != nil && c.snap == room.CurrentSnap {
		return c, nil
	}
	var m *roomMembers
	if c != nil {
		changes, ok, err := tx.StateChanges(c.snap, room.CurrentSnap, memberCacheSteps)
		if err != nil {
			return nil, err
		}
		if ok {
			if m, err = c.follow(tx, room, changes); err != nil {
				return nil, err
			}
		}
	}
	if m == nil {
		var err error
		if m, err = readMembers(tx, room); err != nil {
			return nil, err
		}
	}
	if tx.Writable() {
		// The snapshot may be one this transaction made, which a
		// failed commit would leave unmade and free for another.
		return m, nil
	}
	s.members.mu.Lock()
	if s.members.rooms == nil || len(s.members.rooms) >= memberCacheRooms {
		s.members.rooms = map[uint64]*roomMembers{}
	}
	s.members.rooms[room.NID] = m
	s.members.mu.Unlock()
	return m, nil
}

// readMembers reads a room's joined members from the membership index of
// its current state (no event is parsed).
func readMembers(tx *store.Tx, room *store.Room) (*roomMembers, error) {
	members, err := tx.CurrentState(room.NID, "m.room.member")
	if err != nil {
		return nil, err
	}
	m := &roomMembers{snap: room.CurrentSnap, count: map[string]int{}}
	for sk := range members {
		m.all = append(m.all, sk.Key)
		ms, err := tx.MembershipOf(sk.Key, room.NID)
		if err != nil {
			return nil, err
		}
		if ms.Membership == "join" {
			m.users = append(m.users, sk.Key)
			m.count[serverOf(sk.Key)]++
		}
	}
	slices.Sort(m.all)
	slices.Sort(m.users)
	m.servers = slices.Sorted(maps.Keys(m.count))
	return m, nil
}

// follow returns c brought forward to room's current state, given the
// state entries that changed since c's snapshot: each changed member's
// membership is read from the current membership index.
func (c *roomMembers) follow(tx *store.Tx, room *store.Room, changes map[store.StateKey]uint64) (*roomMembers, error) {
	m := &roomMembers{snap: room.CurrentSnap, all: c.all, users: c.users, servers: c.servers, count: c.count}
	copied, copiedAll := false, false
	for sk, pos := range changes {
		if sk.Type != "m.room.member" {
			continue
		}
		if i, had := slices.BinarySearch(m.all, sk.Key); had != (pos != 0) {
			if !copiedAll { // c is shared: change copies
				m.all, copiedAll = slices.Clone(m.all), true
			}
			if had {
				m.all = slices.Delete(m.all, i, i+1)
			} else {
				m.all = slices.Insert(m.all, i, sk.Key)
			}
		}
		joined := false
		if ms, err := tx.MembershipOf(sk.Key, room.NID); err == nil {
			joined = ms.Membership == "join"
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		i, was := slices.BinarySearch(m.users, sk.Key)
		if joined == was {
			continue
		}
		if !copied { // c is shared: change copies
			m.users, m.count, copied = slices.Clone(m.users), maps.Clone(m.count), true
		}
		server := serverOf(sk.Key)
		if joined {
			m.users = slices.Insert(m.users, i, sk.Key)
			m.count[server]++
		} else {
			m.users = slices.Delete(m.users, i, i+1)
			if m.count[server]--; m.count[server] == 0 {
				delete(m.count, server)
			}
		}
	}
	if copied {
		m.servers = slices.Sorted(maps.Keys(m.count))
	}
	return m, nil
}

// JoinedServers returns the servers with a joined member in a room,
// sorted, ours included if we have one: where the room's events and EDUs
// go, and who may send EDUs about it.
func (s *Service) JoinedServers(roomID string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		out, err = s.joinedServers(tx, room)
		return err
	})
	return slices.Clone(out), err
}

// RemoteServers returns JoinedServers without ours.
func (s *Service) RemoteServers(roomID string) ([]string, error) {
	all, err := s.JoinedServers(roomID)
	return slices.DeleteFunc(all, func(n string) bool { return n == s.serverName }), err
}

// NewlySharedServers returns the other servers joined to roomID that are
// joined to no other room userID is joined to: the servers userID's join
// to roomID brings into contact with them for the first time, which have
// not been following their device list.
func (s *Service) NewlySharedServers(userID, roomID string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		here, err := s.joinedServers(tx, room)
		if err != nil {
			return err
		}
		out = slices.DeleteFunc(slices.Clone(here), func(n string) bool { return n == s.serverName })
		rooms, err := joinedRooms(tx, userID)
		if err != nil {
			return err
		}
		for _, r := range rooms {
			if len(out) == 0 {
				return nil
			}
			if r.NID == room.NID {
				continue
			}
			there, err := s.joinedServers(tx, r)
			if err != nil {
				return err
			}
			out = slices.DeleteFunc(out, func(n string) bool { return slices.Contains(there, n) })
		}
		return nil
	})
	return out, err
}
