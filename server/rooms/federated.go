package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Membership events of remote users go through a two-step handshake: the
// user's server asks us for a template (make_join, make_leave,
// make_knock), signs it, and sends it back (send_join, send_leave,
// send_knock). The reverse, our user joining a room elsewhere, builds on
// the template another server made and imports the state it returns.

// serverOf returns the server name of a user ID.
func serverOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}

// resident reports whether one of our users is joined to the room: only
// then do we hold its current state and may build events in it.
func (s *Service) resident(tx *store.Tx, room *store.Room) (bool, error) {
	servers, err := s.joinedServers(tx, room)
	return slices.Contains(servers, s.serverName), err
}

// MakeMember builds the template of userID's membership event (join,
// leave or knock) for their server origin to sign. versions are the room
// versions origin supports (make_join and make_knock's ver).
func (s *Service) MakeMember(origin, roomID, userID, membership string, versions []string) (string, json.RawMessage, error) {
	if serverOf(userID) != origin {
		return "", nil, mxerr.Forbidden("User %s is not of server %s", userID, origin)
	}
	var authoriser string
	if membership == "join" {
		var err error
		if authoriser, err = s.restrictedAuthoriser(roomID, userID); err != nil {
			return "", nil, err
		}
	}
	content := map[string]any{"membership": membership}
	if authoriser != "" {
		content["join_authorised_via_users_server"] = authoriser
	}
	raw, _ := json.Marshal(content)
	d := &Draft{Sender: userID, Type: "m.room.member", StateKey: &userID, Content: raw}
	unlock := s.lockRoom(roomID)
	defer unlock()
	var room *store.Room
	var h *head
	err := s.store.View(func(tx *store.Tx) (err error) {
		if room, err = knownRoom(tx, roomID); err != nil {
			return err
		}
		if ok, err := s.resident(tx, room); err != nil || !ok {
			if err == nil {
				err = mxerr.NotFound("This server is not in the room")
			}
			return err
		}
		if err := s.checkACL(tx, room, origin); err != nil {
			return err
		}
		h, err = s.loadHead(tx, room, d)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	if membership != "leave" && !slices.Contains(versions, room.Version) {
		return "", nil, &mxerr.Error{Status: 400, Code: "M_INCOMPATIBLE_ROOM_VERSION",
			Message: fmt.Sprintf("Your server does not support room version %s", room.Version),
			Extra:   map[string]any{"room_version": room.Version}}
	}
	ev, err := s.build(h, d)
	if err != nil {
		return "", nil, err
	}
	t, err := pdu.Template(ev)
	return room.Version, t, err
}

// AcceptMember takes a leave or knock origin signed from MakeMember's
// template (send_leave, send_knock), as acceptMember does.
func (s *Service) AcceptMember(ctx context.Context, origin, roomID, eventID, membership string, js []byte) error {
	_, _, _, err := s.acceptMember(ctx, origin, roomID, eventID, membership, js)
	return err
}

// acceptMember takes a membership event origin signed from MakeMember's
// template (send_join, send_leave, send_knock): it must be that
// membership, of a user of origin, by themselves. It goes through the
// ingest pipeline and must end in the room's timeline; the transaction
// that stores it queues it for the room's other servers. It returns the
// event as accepted (with our signature when one of our users authorised
// a restricted join) and its record.
func (s *Service) acceptMember(ctx context.Context, origin, roomID, eventID, membership string, js []byte) (room *store.Room, ev *pdu.Event, rec *store.StoredEvent, err error) {
	err = s.store.View(func(tx *store.Tx) (err error) {
		if room, err = knownRoom(tx, roomID); err != nil {
			return err
		}
		return s.checkACL(tx, room, origin)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	// The parsed event keeps its JSON, which must not be the request's
	// buffer: that is reused once the handler returns.
	if ev, err = pdu.ParseUntrusted(room.Version, slices.Clone(js)); err != nil {
		return nil, nil, nil, mxerr.BadJSON("Invalid event: %v", err)
	}
	if m, _ := ev.Membership(); ev.Type() != "m.room.member" || !ev.StateKeyIs(ev.Sender()) || m != membership {
		return nil, nil, nil, mxerr.BadJSON("Not a %s of the sender", membership)
	}
	if ev.ID() != eventID || ev.RoomID() != roomID {
		return nil, nil, nil, mxerr.BadJSON("The event's ID or room does not match the request")
	}
	if serverOf(ev.Sender()) != origin {
		return nil, nil, nil, mxerr.Forbidden("User %s is not of server %s", ev.Sender(), origin)
	}
	var via struct {
		Authoriser string `json:"join_authorised_via_users_server"`
	}
	_ = json.Unmarshal(ev.Content(), &via)
	if membership == "join" && via.Authoriser != "" && serverOf(via.Authoriser) == s.serverName {
		if ev, err = pdu.AddSignature(ev, s.signer); err != nil {
			return nil, nil, nil, err
		}
	}
	if s.keys == nil {
		return nil, nil, nil, errors.New("rooms: no federation")
	}
	if err := pdu.VerifySignatures(ctx, ev, s.keys); err != nil {
		return nil, nil, nil, mxerr.Forbidden("%v", err)
	}
	unlock := s.lockRoom(roomID)
	err = s.ingest(context.WithValue(ctx, relayKey{}, ev.ID()), origin, room.NID, ev, 0)
	unlock()
	if errors.Is(err, ErrRejected) {
		return nil, nil, nil, mxerr.Forbidden("%v", err)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	err = s.store.View(func(tx *store.Tx) error {
		if rec, err = tx.EventByID(ev.ID()); err != nil {
			return err
		}
		if rec.Flags&store.FlagOutlier != 0 {
			return mxerr.Forbidden("The event is not allowed by the room's current state")
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return room, ev, rec, nil
}

// ImportJoin stores the room our user joined on another server: the
// state and auth chain origin returned from send_join, each event
// verified and checked against its auth events, then the join itself,
// which must be allowed by that state, as the first event of our
// timeline.
func (s *Service) ImportJoin(ctx context.Context, origin, roomID, version string, join []byte, stateJS, chainJS []json.RawMessage) error {
	unlock := s.lockRoom(roomID)
	defer unlock()
	room := &store.Room{RoomID: roomID, Version: version}
	ev, err := s.parseRemote(ctx, version, join)
	if err != nil {
		return err
	}
	err = s.store.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			r, err = tx.CreateRoom(roomID, version)
		}
		if err == nil {
			*room = *r
		}
		return err
	})
	if err != nil {
		return err
	}
	if room.Version != version {
		return fmt.Errorf("rooms: room %s is version %s here, %s there", roomID, room.Version, version)
	}
	state, err := s.importState(ctx, room, stateJS, chainJS)
	if err != nil {
		return err
	}
	if _, ok := state[store.StateKey{Type: "m.room.create"}]; !ok {
		return fmt.Errorf("rooms: the state of %s from %s has no create event", roomID, origin)
	}
	var pos uint64
	err = s.store.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByNID(room.NID)
		if err != nil {
			return err
		}
		auth, err := s.stateEvents(tx, r, state, ev)
		if err != nil {
			return err
		}
		if err := pdu.Allowed(ev, auth); err != nil {
			return fmt.Errorf("rooms: our join is not allowed by the state %s returned: %w", origin, err)
		}
		snap, err := tx.NewSnapshot(state, 0)
		if err != nil {
			return err
		}
		ne := newEvent(ev, nil)
		ne.StateBefore = &snap
		if pos, err = tx.AppendEvent(r, ne); err != nil {
			return err
		}
		return s.indexEvent(tx, r, ev, pos, nil)
	})
	if err != nil {
		return err
	}
	s.heads.add(pos, version, 0, ev.JSON(), ev)
	s.appended(pos, roomID)
	s.joined(*ev.StateKey(), roomID)
	return nil
}

// Handshakes is how our users' membership changes reach rooms and users
// on other servers; the federation layer implements it.
type Handshakes interface {
	// Join joins userID to a room on one of servers (make_join,
	// send_join) and imports it with ImportJoin.
	Join(ctx context.Context, servers []string, roomID, userID string, content map[string]any) error
	// Leave leaves (or rejects an invite to) a room we are not resident
	// in through one of servers (make_leave, send_leave) and returns the
	// leave event as sent.
	Leave(ctx context.Context, servers []string, roomID, userID string, content map[string]any) ([]byte, error)
	// Knock knocks on a room we are not in through one of servers
	// (make_knock, send_knock) and returns the signed knock event and
	// the room's stripped state.
	Knock(ctx context.Context, servers []string, roomID, userID string, content map[string]any) ([]byte, string, []json.RawMessage, error)
	// Invite asks the invitee's server to sign our invite event and
	// returns the event as it signed it.
	Invite(ctx context.Context, version string, ev []byte, strippedState []json.RawMessage) ([]byte, error)
}

// ReceiveInvite takes an invite of one of our users to a room on origin
// (PUT /invite): it checks and countersigns the event and stores it with
// the room's stripped state, so the invite shows in the user's sync; it
// returns the event with our signature.
func (s *Service) ReceiveInvite(ctx context.Context, origin, roomID, eventID, version string, js []byte, stripped []json.RawMessage) ([]byte, error) {
	if !pdu.Known(version) {
		return nil, &mxerr.Error{Status: 400, Code: "M_INCOMPATIBLE_ROOM_VERSION", Message: "Unsupported room version " + version,
			Extra: map[string]any{"room_version": version}}
	}
	ev, err := pdu.ParseUntrusted(version, slices.Clone(js))
	if err != nil {
		return nil, mxerr.BadJSON("Invalid event: %v", err)
	}
	m, _ := ev.Membership()
	target := ""
	if ev.StateKey() != nil {
		target = *ev.StateKey()
	}
	switch {
	case ev.Type() != "m.room.member" || m != "invite":
		return nil, mxerr.BadJSON("Not an invite")
	case ev.ID() != eventID || ev.RoomID() != roomID:
		return nil, mxerr.BadJSON("The event's ID or room does not match the request")
	case serverOf(target) != s.serverName:
		return nil, mxerr.BadJSON("The invitee is not a user of this server")
	case serverOf(ev.Sender()) != origin:
		return nil, mxerr.Forbidden("The inviter is not of server %s", origin)
	}
	if s.keys == nil {
		return nil, errors.New("rooms: no federation")
	}
	// The invitee's server's signature is among those an invite needs:
	// ours goes on before the check.
	signed, err := pdu.AddSignature(ev, s.signer)
	if err != nil {
		return nil, err
	}
	if err := pdu.VerifySignatures(ctx, signed, s.keys); err != nil {
		return nil, mxerr.Forbidden("%v", err)
	}
	switch err := s.receiveResidentInvite(ctx, origin, roomID, signed); {
	case err == nil:
		return signed.JSON(), nil
	case errors.Is(err, ErrRejected):
		return nil, mxerr.Forbidden("%v", err)
	case !errors.Is(err, ErrNotInRoom):
		s.log.Info("federation: an invite to a room we are in did not reach its timeline; keeping it out of band", "room", roomID, "event_id", eventID, "err", err)
	}
	if err := s.storeOutOfBand(roomID, version, target, "invite", signed, stripped); err != nil {
		return nil, err
	}
	return signed.JSON(), nil
}

// receiveResidentInvite takes an invite (countersigned) to a room we are
// in through the ingest pipeline, as the inviting server will send it
// later over /send: it joins the timeline and the room's state at once,
// so the invitee can join or reject it through us before that copy
// arrives. ErrNotInRoom: we are not in the room; any other error but a
// rejection means it is not in the timeline.
func (s *Service) receiveResidentInvite(ctx context.Context, origin, roomID string, ev *pdu.Event) error {
	var room *store.Room
	resident := false
	err := s.store.View(func(tx *store.Tx) (err error) {
		if room, err = tx.RoomByID(roomID); err != nil {
			return err
		}
		resident, err = s.resident(tx, room)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || err == nil && !resident {
		return ErrNotInRoom
	}
	if err != nil {
		return err
	}
	if ev.Version() != room.Version {
		return fmt.Errorf("the invite is of room version %s, the room of %s", ev.Version(), room.Version)
	}
	if !s.ServerAllowed(roomID, origin) {
		return fmt.Errorf("%w: the room's server ACL denies the server", ErrRejected)
	}
	unlock := s.lockRoom(roomID)
	err = s.ingest(ctx, origin, room.NID, ev, 0)
	unlock()
	if err != nil {
		return err
	}
	return s.store.View(func(tx *store.Tx) error {
		rec, err := tx.EventByID(ev.ID())
		if err == nil && rec.Flags&store.FlagOutlier != 0 {
			err = errors.New("the invite is not allowed by the room's current state")
		}
		return err
	})
}

// receiveRescission takes, in a room we are not in, an event of the room
// that may withdraw the out-of-band invite of one of our users: their
// leave, sent by whoever invited them, naming the invite among its auth
// events. Without the room's state nothing more can be checked, so a
// kick by anyone else is ignored, as Synapse does. It reports whether ev
// was one; its signatures are checked already.
func (s *Service) receiveRescission(room *store.Room, ev *pdu.Event) (bool, error) {
	m, _ := ev.Membership()
	if ev.Type() != "m.room.member" || m != "leave" || ev.StateKey() == nil || ev.StateKeyIs(ev.Sender()) {
		return false, nil
	}
	target := *ev.StateKey()
	if serverOf(target) != s.serverName {
		return false, nil
	}
	unlock := s.lockRoom(room.RoomID)
	defer unlock()
	var pos uint64
	err := s.store.Update(func(tx *store.Tx) error {
		cur, err := tx.MembershipOf(target, room.NID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || cur.Membership != "invite" {
			return err
		}
		invite, err := s.eventAt(tx, room.Version, cur.Pos)
		if err != nil {
			return err
		}
		if invite.Sender() != ev.Sender() || !slices.Contains(ev.AuthEventIDs(), invite.ID()) {
			return nil
		}
		if pos, err = tx.AddOutlier(room.NID, ev.ID(), ev.JSON(), 0, 0); err != nil {
			return err
		}
		return tx.SetOutlierMembership(target, room.NID, "leave", pos)
	})
	if err != nil || pos == 0 {
		return false, err
	}
	if s.OnNotify != nil {
		s.OnNotify(pos, target)
	}
	return true, nil
}

// inviteState returns the stripped state a remote invite carried.
func inviteState(js []byte) []StrippedEvent {
	var ev struct {
		Unsigned struct {
			State []StrippedEvent `json:"invite_room_state"`
		} `json:"unsigned"`
	}
	_ = json.Unmarshal(js, &ev)
	return ev.Unsigned.State
}

// remoteServers returns where to reach a room we are not resident in:
// the servers the client named and the inviter's, else the room ID's.
func (s *Service) remoteServers(tx *store.Tx, roomID, userID string, via []string) []string {
	out := slices.Clone(via)
	add := func(server string) {
		if server != "" && server != s.serverName && !slices.Contains(out, server) {
			out = append(out, server)
		}
	}
	if room, err := tx.RoomByID(roomID); err == nil {
		if m, err := tx.MembershipOf(userID, room.NID); err == nil {
			if rec, err := tx.Event(m.Pos); err == nil {
				var ev struct {
					Sender string `json:"sender"`
				}
				_ = json.Unmarshal(rec.JSON, &ev)
				add(serverOf(ev.Sender))
			}
		}
	}
	// The room ID's server, of versions before 12, only when nothing
	// else is known, as Synapse does: a client naming servers chose them
	// (a restricted join that none of them can authorise must fail).
	if len(slices.DeleteFunc(slices.Clone(out), func(n string) bool { return n == s.serverName })) == 0 {
		add(serverOf(roomID))
	}
	return slices.DeleteFunc(out, func(n string) bool { return n == s.serverName })
}

// federationTimeout bounds a membership handshake with another server.
const federationTimeout = 2 * time.Minute

// Resident reports whether one of our users is joined to a room.
func (s *Service) Resident(roomID string) (bool, error) {
	var ok bool
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		ok, err = s.resident(tx, room)
		return err
	})
	return ok, err
}

// joinRemote joins c.Target to a room we are not in through another
// server.
func (s *Service) joinRemote(roomID string, c *MemberChange, content map[string]any) (string, error) {
	servers, err := s.serversToReach(roomID, c.Target, c.Via)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), federationTimeout)
	defer cancel()
	if err := s.handshakes.Join(ctx, servers, roomID, c.Target, content); err != nil {
		return "", err
	}
	var id string
	err = s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		m, err := tx.MembershipOf(c.Target, room.NID)
		if err != nil {
			return err
		}
		ev, err := s.eventAt(tx, room.Version, m.Pos)
		if err == nil {
			id = ev.ID()
		}
		return err
	})
	return id, err
}

// leaveRemote leaves, or rejects the invite to (or rescinds the knock
// on), a room we are not resident in, through the server that invited
// us. The leave is kept as the user's out-of-band membership, so their
// sync shows it; where no server takes it (the inviting server may be
// gone for good), it is one we build and sign ourselves, kept only
// here, as Synapse does: the invite is withdrawn all the same.
func (s *Service) leaveRemote(roomID, userID string, content map[string]any) (string, error) {
	if s.handshakes == nil {
		return "", mxerr.Forbidden("This server is not in the room")
	}
	var servers []string
	var room *store.Room
	err := s.store.View(func(tx *store.Tx) (err error) {
		room, err = knownRoom(tx, roomID)
		servers = s.remoteServers(tx, roomID, userID, nil)
		return err
	})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), federationTimeout)
	defer cancel()
	var leave *pdu.Event
	js, err := s.handshakes.Leave(ctx, servers, roomID, userID, content)
	if err == nil {
		leave, err = pdu.Parse(room.Version, js, false)
	}
	if err != nil {
		s.log.Info("federation: remote leave failed; withdrawing the invite locally", "room", roomID, "err", err)
	}
	unlock := s.lockRoom(roomID)
	defer unlock()
	var pos uint64
	err = s.store.Update(func(tx *store.Tx) error {
		m, err := tx.MembershipOf(userID, room.NID)
		if err != nil || m.Membership == "join" || m.Membership == "leave" && leave == nil {
			return err
		}
		if leave == nil {
			if leave, err = s.localLeave(tx, room, userID, m.Pos, content); err != nil {
				return err
			}
		}
		if pos, err = tx.AddOutlier(room.NID, leave.ID(), leave.JSON(), 0, 0); err != nil {
			return err
		}
		return tx.SetOutlierMembership(userID, room.NID, "leave", pos)
	})
	if err != nil || pos == 0 {
		return "", err
	}
	if s.OnNotify != nil {
		s.OnNotify(pos, userID)
	}
	return leave.ID(), nil
}

// localLeave builds userID's leave of a room we are not in, on their
// out-of-band membership event at pos (an invite or a knock): the event
// it follows and its only auth event. No other server sees it.
func (s *Service) localLeave(tx *store.Tx, room *store.Room, userID string, pos uint64, content map[string]any) (*pdu.Event, error) {
	prev, err := s.eventAt(tx, room.Version, pos)
	if err != nil {
		return nil, err
	}
	c := map[string]any{}
	for k, v := range content {
		c[k] = v
	}
	c["membership"] = "leave"
	raw, _ := json.Marshal(c)
	p := &pdu.Proto{Version: room.Version, RoomID: room.RoomID, Sender: userID, Type: "m.room.member", StateKey: &userID,
		Content: raw, PrevEvents: []string{prev.ID()}, Depth: prev.Depth() + 1}
	return pdu.Build(p, []*pdu.Event{prev}, s.signer, time.Now())
}

// inviteRemote has the invitee's server countersign our invite ev.
func (s *Service) inviteRemote(roomID string, ev *pdu.Event) (*pdu.Event, error) {
	if s.handshakes == nil {
		return nil, mxerr.Forbidden("This server does not federate")
	}
	st, err := s.StrippedState(roomID)
	if err != nil {
		return nil, err
	}
	var stripped []json.RawMessage
	for _, e := range st {
		raw, _ := json.Marshal(e)
		stripped = append(stripped, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), federationTimeout)
	defer cancel()
	signed, err := s.handshakes.Invite(ctx, ev.Version(), ev.JSON(), stripped)
	if err != nil {
		return nil, mxerr.Forbidden("The invitee's server refused the invite: %v", err)
	}
	out, err := s.parseRemote(ctx, ev.Version(), signed)
	if err != nil || out.ID() != ev.ID() {
		return nil, mxerr.Forbidden("The invitee's server returned a bad event")
	}
	return out, nil
}

// StrippedState returns the stripped current state an invitee or
// knocker is shown of a room.
func (s *Service) StrippedState(roomID string) ([]StrippedEvent, error) {
	out := []StrippedEvent{}
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		for _, typ := range strippedTypes {
			if e, err := s.stateEvent(tx, room, typ, ""); err == nil {
				out = append(out, StrippedEvent{Type: e.Type(), StateKey: *e.StateKey(), Content: e.Content(), Sender: e.Sender(), OriginServerTS: e.OriginServerTS()})
			}
		}
		return nil
	})
	return out, err
}

// Knock knocks c.Target on a room: in a room we are in, a local event;
// elsewhere, through the room's servers, with the knock kept (and the
// room's stripped state) so it shows in the user's sync.
func (s *Service) Knock(roomID string, c *MemberChange) (string, error) {
	c.Membership = "knock"
	if resident, err := s.Resident(roomID); err == nil && resident {
		return s.ChangeMembership(roomID, c)
	} else if e, ok := mxerr.As(err); err != nil && !(ok && e.Code == "M_NOT_FOUND") {
		return "", err
	}
	servers, err := s.serversToReach(roomID, c.Target, c.Via)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), federationTimeout)
	defer cancel()
	js, version, stripped, err := s.handshakes.Knock(ctx, servers, roomID, c.Target, memberContent(c, nil))
	if err != nil {
		return "", err
	}
	ev, err := pdu.Parse(version, js, false)
	if err != nil {
		return "", err
	}
	if err := s.storeOutOfBand(roomID, version, c.Target, "knock", ev, stripped); err != nil {
		return "", err
	}
	return ev.ID(), nil
}

// serversToReach returns the servers to reach a room we are not in
// through (see remoteServers), or M_NOT_FOUND when there are none.
func (s *Service) serversToReach(roomID, userID string, via []string) ([]string, error) {
	var servers []string
	if s.handshakes != nil {
		_ = s.store.View(func(tx *store.Tx) error {
			servers = s.remoteServers(tx, roomID, userID, via)
			return nil
		})
	}
	if len(servers) == 0 {
		return nil, mxerr.NotFound("No known servers for this room")
	}
	return servers, nil
}

// storeOutOfBand keeps userID's membership of a room we are not in, from
// an event another server handled (an invite it sent us, our knock it
// accepted): the event as an outlier, with the room's stripped state in
// its unsigned as Synapse keeps it, for the user's sync. A user already
// joined cannot be invited.
func (s *Service) storeOutOfBand(roomID, version, userID, membership string, ev *pdu.Event, stripped []json.RawMessage) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &obj); err != nil {
		return err
	}
	unsigned := map[string]json.RawMessage{}
	_ = json.Unmarshal(obj["unsigned"], &unsigned)
	if stripped == nil {
		stripped = []json.RawMessage{}
	}
	unsigned["invite_room_state"], _ = json.Marshal(stripped)
	obj["unsigned"], _ = json.Marshal(unsigned)
	stored, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	unlock := s.lockRoom(roomID)
	defer unlock()
	var pos uint64
	err = s.store.Update(func(tx *store.Tx) error {
		r, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			r, err = tx.CreateRoom(roomID, version)
		}
		if err != nil {
			return err
		}
		if cur, err := tx.MembershipOf(userID, r.NID); err == nil && cur.Membership == "join" && membership == "invite" {
			return mxerr.Forbidden("The user is already in the room")
		}
		if pos, err = tx.AddOutlier(r.NID, ev.ID(), stored, 0, 0); err != nil {
			return err
		}
		return tx.SetOutlierMembership(userID, r.NID, membership, pos)
	})
	if err == nil && s.OnNotify != nil {
		s.OnNotify(pos, userID)
	}
	return err
}
