package rooms

import (
	"slices"
	"strings"

	"hearth/store"
)

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
		joined, err := s.joinedMembers(tx, room)
		for _, u := range joined {
			if _, server, ok := strings.Cut(u, ":"); ok && !slices.Contains(out, server) {
				out = append(out, server)
			}
		}
		return err
	})
	slices.Sort(out)
	return out, err
}

// RemoteServers returns JoinedServers without ours.
func (s *Service) RemoteServers(roomID string) ([]string, error) {
	all, err := s.JoinedServers(roomID)
	return slices.DeleteFunc(all, func(n string) bool { return n == s.serverName }), err
}
