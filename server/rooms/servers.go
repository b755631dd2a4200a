package rooms

import (
	"slices"
	"sync"

	"hearth/store"
)

// serverCache remembers each room's joined servers for the current state
// snapshot they were computed from: every local event and room EDU asks
// where to go, and a room may have thousands of members.
type serverCache struct {
	mu    sync.Mutex
	rooms map[uint64]cachedServers // by room NID
}

type cachedServers struct {
	snap    uint64
	servers []string
}

// joinedServers returns the servers with a joined member in room, sorted.
func (s *Service) joinedServers(tx *store.Tx, room *store.Room) ([]string, error) {
	s.servers.mu.Lock()
	c, ok := s.servers.rooms[room.NID]
	s.servers.mu.Unlock()
	if ok && c.snap == room.CurrentSnap {
		return c.servers, nil
	}
	joined, err := s.joinedMembers(tx, room)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range joined {
		if server := serverOf(u); !slices.Contains(out, server) {
			out = append(out, server)
		}
	}
	slices.Sort(out)
	s.servers.mu.Lock()
	if s.servers.rooms == nil || len(s.servers.rooms) > 4096 {
		s.servers.rooms = map[uint64]cachedServers{}
	}
	s.servers.rooms[room.NID] = cachedServers{snap: room.CurrentSnap, servers: out}
	s.servers.mu.Unlock()
	return out, nil
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
