package rooms

import (
	"encoding/json"
	"slices"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// upgradeCopiedState is the state an upgrade carries into the new room,
// Synapse's list.
var upgradeCopiedState = []string{
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name",
	"m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.canonical_alias",
}

// Upgrade replaces roomID with a new room of newVersion (spec: "Room
// Upgrades"): the new room's create event names its predecessor, the
// power levels, rules, name, topic, avatar, encryption, ACLs and bans are
// copied, the old room gets a tombstone pointing to the new one, and the
// old room's power levels stop ordinary members from speaking or
// inviting; the old room's local aliases and its place in the public room
// directory pass to the new one. Everything lands in one transaction. It
// returns the new room's ID. additionalCreators (room version 12 and
// later) are made creators of the new room beside the sender, and so
// left out of its power levels.
func (s *Service) Upgrade(roomID, sender, newVersion string, senderProfile map[string]string, additionalCreators []string) (string, error) {
	if !pdu.Known(newVersion) {
		return "", &mxerr.Error{Status: 400, Code: "M_UNSUPPORTED_ROOM_VERSION", Message: "Room version " + newVersion + " is not supported"}
	}
	if slices.ContainsFunc(additionalCreators, func(u string) bool { return !pdu.ValidUserID(u) }) {
		return "", mxerr.InvalidParam("additional_creators must be a list of user IDs")
	}
	if !pdu.PrivilegedCreators(newVersion) {
		additionalCreators = nil // the version has no such thing
	}
	unlock := s.lockRoom(roomID)
	defer unlock()

	var old *store.Room
	var oldHead *head
	var state map[pdu.StateKey]*pdu.Event
	var servers []string // the old room's other servers, who must see its tombstone
	var ps *policyServer // the old room's policy server, which must sign its last events
	err := s.store.View(func(tx *store.Tx) (err error) {
		old, err = knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if ps, err = s.policyServerOf(tx, old); err != nil {
			return err
		}
		joined, err := s.joinedServers(tx, old)
		if err != nil {
			return err
		}
		servers = slices.DeleteFunc(slices.Clone(joined), func(n string) bool { return n == s.serverName })
		if m, err := tx.MembershipOf(sender, old.NID); err != nil || m.Membership != "join" {
			return mxerr.Forbidden("You are not joined to this room")
		}
		empty := ""
		if oldHead, err = s.loadHead(tx, old, &Draft{Sender: sender, Type: "m.room.tombstone", StateKey: &empty, Content: json.RawMessage(`{}`)}); err != nil {
			return err
		}
		cur, err := tx.CurrentState(old.NID, "")
		if err != nil {
			return err
		}
		state = map[pdu.StateKey]*pdu.Event{}
		for sk, pos := range cur {
			if sk.Type != "m.room.member" && sk.Type != "m.room.power_levels" && sk.Type != "m.room.create" && !contains(upgradeCopiedState, sk.Type) {
				continue
			}
			if state[pdu.StateKey{Type: sk.Type, StateKey: sk.Key}], err = s.eventAt(tx, old.Version, pos); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}

	// The new room, built in memory first.
	h := &head{version: newVersion, state: map[pdu.StateKey]*pdu.Event{}}
	if !pdu.DomainlessRoomIDs(newVersion) {
		h.roomID = "!" + randomID(18) + ":" + s.serverName
	}
	var events []*pdu.Event
	add := func(typ, key string, content any) error {
		b, err := json.Marshal(content)
		if err != nil {
			return err
		}
		ev, err := s.build(h, &Draft{Sender: sender, Type: typ, StateKey: &key, Content: b})
		if err != nil {
			return err
		}
		events = append(events, ev)
		return nil
	}
	create := map[string]any{}
	if ev := state[pdu.StateKey{Type: "m.room.create"}]; ev != nil {
		_ = json.Unmarshal(ev.Content(), &create)
	}
	delete(create, "creator")
	delete(create, "additional_creators")
	delete(create, "predecessor")
	create["room_version"] = newVersion
	create["predecessor"] = map[string]any{"room_id": roomID}
	if pdu.CreatorInContent(newVersion) {
		create["creator"] = sender
	}
	if len(additionalCreators) > 0 {
		create["additional_creators"] = additionalCreators
	}
	if err := add("m.room.create", "", create); err != nil {
		return "", err
	}
	member := map[string]any{"membership": "join"}
	for k, v := range senderProfile {
		if v != "" {
			member[k] = v
		}
	}
	if err := add("m.room.member", sender, member); err != nil {
		return "", err
	}
	pl := map[string]any{}
	if ev := state[pdu.StateKey{Type: "m.room.power_levels"}]; ev != nil {
		_ = json.Unmarshal(ev.Content(), &pl)
	}
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	if pdu.PrivilegedCreators(newVersion) {
		// Creators outrank everyone without being listed.
		delete(users, sender)
		for _, c := range additionalCreators {
			delete(users, c)
		}
	} else {
		users[sender] = maxLevel(users)
	}
	pl["users"] = users
	if err := add("m.room.power_levels", "", pl); err != nil {
		return "", err
	}
	for _, typ := range upgradeCopiedState {
		if ev := state[pdu.StateKey{Type: typ}]; ev != nil {
			var c map[string]any
			_ = json.Unmarshal(ev.Content(), &c)
			if err := add(typ, "", c); err != nil {
				return "", err
			}
		}
	}
	for sk, ev := range state {
		if sk.Type == "m.room.member" {
			if m, _ := ev.Membership(); m == "ban" {
				if err := add("m.room.member", sk.StateKey, map[string]any{"membership": "ban"}); err != nil {
					return "", err
				}
			}
		}
	}

	// The old room: a tombstone, then power levels that silence it.
	tombstone, err := s.build(oldHead, &Draft{Sender: sender, Type: "m.room.tombstone", StateKey: ptr(""),
		Content: mustJSON(map[string]any{"body": "This room has been replaced", "replacement_room": h.roomID})})
	if err != nil {
		return "", err
	}
	oldPL := map[string]any{}
	if ev := state[pdu.StateKey{Type: "m.room.power_levels"}]; ev != nil {
		_ = json.Unmarshal(ev.Content(), &oldPL)
	}
	restrict := int64(50)
	if ud, ok := oldPL["users_default"].(float64); ok && int64(ud)+1 > restrict {
		restrict = int64(ud) + 1
	}
	oldPL["events_default"], oldPL["invite"] = restrict, restrict
	// The power levels event needs the old room's power levels and the
	// sender's membership as auth state, besides what the tombstone needed.
	oldHead.state[pdu.StateKey{Type: "m.room.member", StateKey: sender}] = state[pdu.StateKey{Type: "m.room.member", StateKey: sender}]
	restricted, err := s.build(oldHead, &Draft{Sender: sender, Type: "m.room.power_levels", StateKey: ptr(""), Content: mustJSON(oldPL)})
	if err != nil {
		return "", err
	}
	if tombstone, err = s.policySign(ps, tombstone); err != nil {
		return "", err
	}
	if restricted, err = s.policySign(ps, restricted); err != nil {
		return "", err
	}

	var last uint64
	var deliver []func()
	err = s.store.Update(func(tx *store.Tx) error {
		room, err := tx.CreateRoom(h.roomID, newVersion)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if last, err = tx.AppendEvent(room, newEvent(ev, nil)); err != nil {
				return err
			}
		}
		o, err := tx.RoomByNID(old.NID)
		if err != nil {
			return err
		}
		deliver = deliver[:0]
		for _, ev := range []*pdu.Event{tombstone, restricted} {
			if last, err = tx.AppendEvent(o, newEvent(ev, nil)); err != nil {
				return err
			}
			if s.QueueLocalEvent != nil && len(servers) > 0 {
				start, err := s.QueueLocalEvent(tx, servers, ev.JSON())
				if err != nil {
					return err
				}
				deliver = append(deliver, start)
			}
		}
		if err := moveDirectory(tx, o, room); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	s.appended(last, h.roomID, roomID)
	for _, start := range deliver {
		start()
	}
	return h.roomID, nil
}

func maxLevel(users map[string]any) float64 {
	best := 100.0
	for _, v := range users {
		if f, ok := v.(float64); ok && f > best {
			best = f
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func ptr(s string) *string { return &s }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called on maps of plain values
	}
	return b
}
