package server

import (
	"encoding/json"
	"slices"
	"strings"

	"hearth/federation"
)

// The wiring of ephemeral data between the sync API, the key service and
// federation, which sit side by side and may not import each other.

// sendEDU queues an EDU for destinations through the federation sender.
func (s *Server) sendEDU(destinations []string, eduType string, content any) error {
	b, err := json.Marshal(map[string]any{"edu_type": eduType, "content": content})
	if err == nil {
		err = s.sender.Enqueue(destinations, nil, [][]byte{b})
	}
	if err != nil {
		s.log.Warn("federation: queue EDU", "type", eduType, "err", err)
	}
	return err
}

// ephemeral is where inbound EDUs deliver to our clients.
func (s *Server) ephemeral() federation.Ephemeral {
	return federation.Ephemeral{
		Typing: s.sync.SetRemoteTyping,
		Presence: func(userID string, p *federation.PresenceUpdate) {
			s.sync.SetRemotePresence(userID, p.Presence, p.StatusMsg, p.LastActiveAgo, p.CurrentlyActive)
		},
		ToDevice: func(origin string, m *federation.ToDeviceMessage) error {
			return s.sync.DeliverRemoteToDevice(origin, m.Sender, m.Type, m.MessageID, m.Messages)
		},
	}
}

// federateDeviceList tells the servers of peers (the users sharing a
// room with a local user) what changed in that user's devices and keys.
func (s *Server) federateDeviceList(userID string, peers []string) {
	var servers []string
	for _, u := range peers {
		_, server, ok := strings.Cut(u, ":")
		if ok && server != s.cfg.ServerName && !slices.Contains(servers, server) {
			servers = append(servers, server)
		}
	}
	if len(servers) == 0 {
		return // told when they next share a room and ask, or resync
	}
	edus, err := s.keys.DeviceListEDUs(userID)
	if err == nil && len(edus) > 0 {
		err = s.sender.Enqueue(servers, nil, edus)
	}
	if err != nil {
		s.log.Warn("federation: device-list update", "user", userID, "err", err)
	}
}

// federateDevicesOnJoin tells the servers a local user's join brought
// them into contact with for the first time what devices the user has,
// as the spec asks ("when that user joins a room which contains servers
// which are not already receiving updates"): without it those servers'
// users encrypt for the user from whatever they last cached, or not at
// all, until something else makes them fetch the list. The servers
// already sharing a room with the user follow their list through the
// ordinary updates and are sent nothing new.
func (s *Server) federateDevicesOnJoin(userID, roomID string) {
	if s.sender == nil {
		return
	}
	servers, err := s.rooms.NewlySharedServers(userID, roomID)
	if err != nil || len(servers) == 0 {
		if err != nil {
			s.log.Warn("federation: servers new to a joiner", "user", userID, "room", roomID, "err", err)
		}
		return
	}
	// What changed and was never told goes first, to the servers that
	// shared a room before, so that the snapshot's stream ID is what
	// every peer has been or will be told. The new servers get only the
	// snapshot: what changed before the join is no news to them.
	peers, err := s.rooms.SharedUsers(userID)
	if err != nil {
		s.log.Warn("sync notification: users sharing a room", "user", userID, "err", err)
	}
	var old []string
	for _, u := range peers {
		_, server, ok := strings.Cut(u, ":")
		if ok && server != s.cfg.ServerName && !slices.Contains(servers, server) && !slices.Contains(old, server) {
			old = append(old, server)
		}
	}
	// DeviceListEDUs records the changes as told even when no server
	// shared a room before: the snapshot below then includes them.
	pending, err := s.keys.DeviceListEDUs(userID)
	if err == nil && len(pending) > 0 && len(old) > 0 {
		err = s.sender.Enqueue(old, nil, pending)
	}
	if err != nil {
		s.log.Warn("federation: device-list update", "user", userID, "err", err)
	}
	edus, err := s.keys.DeviceListSnapshot(userID)
	if err == nil && len(edus) > 0 {
		err = s.sender.Enqueue(servers, nil, edus)
	}
	if err != nil {
		s.log.Warn("federation: device list for a joiner", "user", userID, "room", roomID, "err", err)
	}
}
