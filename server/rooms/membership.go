package rooms

import (
	"encoding/json"
	"errors"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// MemberChange is a change of someone's membership of a room.
type MemberChange struct {
	Sender     string
	Target     string // the user whose membership changes
	Membership string // join, leave, invite, ban
	Reason     string
	// Profile is the target's displayname and avatar_url, carried in
	// joins and invites so clients can show names without a lookup.
	Profile  map[string]string
	IsDirect bool
	Txn      *store.TxnKey
	// Extra are further content fields from the client's request body
	// (Synapse copies a join's body into the member event).
	Extra map[string]json.RawMessage
	// Via are servers to join a room we are not in through (the
	// client's via and server_name, an alias's servers).
	Via []string
}

// ChangeMembership sends the member event of c. The auth rules decide
// whether it is allowed: bans keep users out, invite-only rooms need an
// invite, kicks and bans need power.
func (s *Service) ChangeMembership(roomID string, c *MemberChange) (string, error) {
	return s.changeMembershipWith(roomID, c, nil)
}

// changeMembershipWith is ChangeMembership with extra content fields.
func (s *Service) changeMembershipWith(roomID string, c *MemberChange, extra map[string]any) (string, error) {
	content := memberContent(c, extra)
	b, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	target := c.Target
	d := &Draft{Sender: c.Sender, Type: "m.room.member", StateKey: &target, Content: b, Txn: c.Txn}
	if serverOf(target) != s.serverName {
		switch c.Membership {
		case "invite":
			d.exchange = func(ev *pdu.Event) (*pdu.Event, error) { return s.inviteRemote(roomID, ev) }
		case "join", "knock":
			return "", mxerr.Forbidden("Users of other servers join through their own server")
		}
	} else if c.Membership == "leave" && c.Sender == c.Target {
		if resident, err := s.Resident(roomID); err == nil && !resident {
			return s.leaveRemote(roomID, c.Target, content)
		}
	}
	return s.Send(roomID, d)
}

// memberContent is the content of c's member event.
func memberContent(c *MemberChange, extra map[string]any) map[string]any {
	content := map[string]any{"membership": c.Membership}
	if c.Reason != "" {
		content["reason"] = c.Reason
	}
	if c.Membership == "join" || c.Membership == "invite" {
		for k, v := range c.Profile {
			if v != "" {
				content[k] = v
			}
		}
	}
	if c.IsDirect {
		content["is_direct"] = true
	}
	for k, v := range c.Extra {
		if k != "membership" && k != "join_authorised_via_users_server" {
			content[k] = v
		}
	}
	for k, v := range extra {
		content[k] = v
	}
	return content
}

// Membership returns a user's membership of a room ("" for none).
func (s *Service) Membership(userID, roomID string) (string, error) {
	var out string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := roomIfKnown(tx, roomID)
		if err != nil || room == nil {
			return err
		}
		m, err := tx.MembershipOf(userID, room.NID)
		if err == nil {
			out = m.Membership
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	return out, err
}

// Forget hides a room the user has left from them for good.
func (s *Service) Forget(userID, roomID string) error {
	return s.store.Update(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		m, err := tx.MembershipOf(userID, room.NID)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("You were never in this room")
		}
		if err != nil {
			return err
		}
		if m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock" {
			return mxerr.Unknown("You must leave the room before forgetting it")
		}
		return tx.SetForgotten(userID, room.NID)
	})
}

// Member is one entry of /members and /joined_members.
type Member struct {
	UserID     string
	Membership string
	Event      *ClientEvent
}

// Members returns the member events of a room that userID may see: as
// of now, or, with at (a sync or /messages token), as of that point (no
// later than the user's own leave).
func (s *Service) Members(userID, roomID, at string) ([]Member, error) {
	var out []Member
	var atPos uint64
	if at != "" {
		var err error
		if atPos, err = tokenPos(at); err != nil {
			return nil, err
		}
	}
	err := s.store.View(func(tx *store.Tx) error {
		v, err := s.viewFor(tx, userID, roomID)
		if err != nil {
			return err
		}
		st, err := s.stateOf(tx, v)
		if err != nil {
			return err
		}
		if at != "" && (v.until == 0 || atPos < v.until) {
			last, err := tx.LastRoomEvent(v.room.NID, atPos)
			if errors.Is(err, store.ErrNotFound) {
				return mxerr.NotFound("The room has no event before %s", at)
			} else if err != nil {
				return err
			} else {
				// The members then are history: only for a user who
				// may see the room's history at that point, as Synapse
				// answers.
				if ok, err := v.visible(last); err != nil {
					return err
				} else if !ok {
					return mxerr.Forbidden("You may not see the room at %s", at)
				}
				ev, err := s.eventAt(tx, v.room.Version, last.Pos)
				if err != nil {
					return err
				}
				var sk *store.StateKey
				if ev.IsState() {
					sk = &store.StateKey{Type: ev.Type(), Key: *ev.StateKey()}
				}
				if st, err = tx.StateAfter(last, sk); err != nil {
					return err
				}
			}
		}
		for sk, pos := range st {
			if sk.Type != "m.room.member" {
				continue
			}
			ce, err := s.clientEventAt(tx, v, pos)
			if err != nil {
				return err
			}
			var c struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(ce.Content, &c)
			out = append(out, Member{UserID: sk.Key, Membership: c.Membership, Event: ce})
		}
		return nil
	})
	return out, err
}

// Version returns a room's version, or M_NOT_FOUND for an unknown room.
func (s *Service) Version(roomID string) (string, error) {
	var v string
	err := s.store.View(func(tx *store.Tx) error {
		r, err := knownRoom(tx, roomID)
		if err == nil {
			v = r.Version
		}
		return err
	})
	return v, err
}

// PropagateProfile sends an updated m.room.member event, carrying the new
// displayname and avatar_url, to every room userID is joined to (the spec's
// profile propagation). Rooms where the update is refused (say, a power
// level forbids it) are skipped and logged; the profile change stands.
func (s *Service) PropagateProfile(userID string, profile map[string]string) {
	rooms, err := s.JoinedRooms(userID)
	if err != nil {
		s.log.Warn("profile propagation: list rooms", "user", userID, "err", err)
		return
	}
	for _, roomID := range rooms {
		content, err := s.currentMemberContent(userID, roomID)
		if err != nil {
			s.log.Warn("profile propagation: read member event", "user", userID, "room", roomID, "err", err)
			continue
		}
		for k, v := range profile {
			if v == "" {
				delete(content, k)
			} else {
				content[k] = v
			}
		}
		b, _ := json.Marshal(content)
		key := userID
		if _, err := s.Send(roomID, &Draft{Sender: userID, Type: "m.room.member", StateKey: &key, Content: b}); err != nil {
			s.log.Warn("profile propagation refused", "user", userID, "room", roomID, "err", err)
		}
	}
}

// currentMemberContent returns the content of userID's current member
// event in a room, as a map to edit.
func (s *Service) currentMemberContent(userID, roomID string) (map[string]any, error) {
	content := map[string]any{}
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		pos, err := tx.CurrentStateEvent(room.NID, store.StateKey{Type: "m.room.member", Key: userID})
		if err != nil {
			return err
		}
		ev, err := s.eventAt(tx, room.Version, pos)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(ev.Content(), &content); err != nil {
			return err
		}
		// The authoriser of a restricted join authorised that join only;
		// a profile change is no join into the room, and other servers
		// would find no signature of its server on it.
		delete(content, "join_authorised_via_users_server")
		return nil
	})
	return content, err
}

// SharedUsers returns everyone joined to a room userID is joined to
// (themself excluded): whose presence they see.
func (s *Service) SharedUsers(userID string) ([]string, error) {
	seen := map[string]bool{}
	err := s.store.View(func(tx *store.Tx) error {
		rooms, err := joinedRooms(tx, userID)
		if err != nil {
			return err
		}
		for _, room := range rooms {
			members, err := s.joinedMembers(tx, room)
			if err != nil {
				return err
			}
			for _, u := range members {
				if u != userID {
					seen[u] = true
				}
			}
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	return out, err
}
