package rooms

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// MaxAliasLength is the spec's limit on a room alias, sigil and server
// name included, in bytes.
const MaxAliasLength = 255

func badAlias(alias string) *mxerr.Error {
	return &mxerr.Error{Status: http.StatusBadRequest, Code: "M_BAD_ALIAS", Message: "Room alias " + alias + " does not point to the room"}
}

// ParseAlias splits a room alias "#localpart:server" (spec appendix "Room
// Aliases": any localpart without ':' or NUL, a valid server name, at most
// 255 bytes). A malformed alias is 400 M_INVALID_PARAM.
func ParseAlias(alias string) (localpart, server string, err error) {
	invalid := mxerr.InvalidParam("Room alias %q is invalid", alias)
	if len(alias) > MaxAliasLength || !utf8.ValidString(alias) || !strings.HasPrefix(alias, "#") {
		return "", "", invalid
	}
	localpart, server, ok := strings.Cut(alias[1:], ":")
	if !ok || localpart == "" || strings.ContainsRune(localpart, 0) || !validServerName(server) {
		return "", "", invalid
	}
	return localpart, server, nil
}

// parseNewAlias is ParseAlias with Synapse's further rule for aliases
// created here: no whitespace or control characters in the localpart.
func parseNewAlias(alias string) (server string, err error) {
	localpart, server, err := ParseAlias(alias)
	if err != nil {
		return "", err
	}
	if strings.IndexFunc(localpart, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", mxerr.InvalidParam("Room alias %q has whitespace or control characters", alias)
	}
	return server, nil
}

// validServerName checks the spec's server name grammar: a DNS name, an
// IPv4 address or a bracketed IPv6 literal, then an optional port.
func validServerName(name string) bool {
	host, port := name, ""
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return false
		}
		host, port = name[:end+1], name[end+1:]
		if strings.Trim(host[1:len(host)-1], "0123456789abcdefABCDEF:.") != "" || len(host) < 4 {
			return false
		}
	} else if i := strings.LastIndexByte(name, ':'); i >= 0 {
		host, port = name[:i], name[i:]
	}
	if port != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(port, ":"))
		if !strings.HasPrefix(port, ":") || err != nil || n < 1 || n > 65535 || len(port) > 6 {
			return false
		}
	}
	if strings.HasPrefix(host, "[") {
		return true
	}
	if host == "" || len(host) > 255 {
		return false
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// AliasTarget is what a room alias resolves to.
type AliasTarget struct {
	RoomID  string   `json:"room_id"`
	Servers []string `json:"servers"`
}

// ResolveAlias returns the room a room alias points to: M_INVALID_PARAM
// for a malformed alias, M_NOT_FOUND for an unknown one. It knows only our
// own aliases: another server's is M_NOT_FOUND here, and the client API
// asks that server over federation instead.
func (s *Service) ResolveAlias(alias string) (*AliasTarget, error) {
	_, server, err := ParseAlias(alias)
	if err != nil {
		return nil, err
	}
	if server != s.serverName {
		return nil, mxerr.NotFound("Room alias %s is not an alias of this server", alias)
	}
	var out *AliasTarget
	err = s.store.View(func(tx *store.Tx) error {
		a, err := tx.AliasByName(alias)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Room alias %s not found", alias)
		}
		if err != nil {
			return err
		}
		room, err := tx.RoomByID(a.RoomID)
		if err != nil {
			return err
		}
		joined, err := s.joinedMembers(tx, room)
		if err != nil {
			return err
		}
		out = &AliasTarget{RoomID: a.RoomID, Servers: residentServers(s.serverName, joined)}
		return nil
	})
	return out, err
}

// residentServers returns the servers of the joined members, ours first,
// as the servers to join a room through.
func residentServers(ours string, joined []string) []string {
	out := []string{ours}
	for _, u := range joined {
		if _, server, ok := strings.Cut(u, ":"); ok && !slices.Contains(out, server) {
			out = append(out, server)
		}
	}
	return out
}

// CreateAlias maps a new local alias to a room. Like Synapse, only a
// joined member (or a server admin) may, and a taken alias is the spec's
// 409 M_UNKNOWN.
func (s *Service) CreateAlias(userID string, admin bool, alias, roomID string) error {
	server, err := parseNewAlias(alias)
	if err != nil {
		return err
	}
	if server != s.serverName {
		return mxerr.InvalidParam("Room alias must be on this server (%s)", s.serverName)
	}
	if !strings.HasPrefix(roomID, "!") {
		return mxerr.InvalidParam("Invalid room ID")
	}
	return s.store.Update(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if !admin {
			// Asked before whether the room exists, which only members learn.
			if room == nil || !joined(tx, userID, room) {
				return mxerr.Forbidden("You must be in the room to create an alias for it")
			}
		}
		if room == nil {
			return mxerr.Unknown("Room does not exist")
		}
		err = tx.PutAlias(&store.Alias{Alias: alias, RoomID: roomID, Creator: userID})
		if errors.Is(err, store.ErrExists) {
			return &mxerr.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Message: "Room alias " + alias + " already exists"}
		}
		return err
	})
}

func joined(tx *store.Tx, userID string, room *store.Room) bool {
	m, err := tx.MembershipOf(userID, room.NID)
	return err == nil && m.Membership == "join"
}

// DeleteAlias removes a local alias. Its creator, a server admin, or (as
// in Synapse) a member with the power to send m.room.canonical_alias may.
// The room's m.room.canonical_alias event then drops the alias, sent as
// the caller; when they lack the power for that, the alias is deleted all
// the same, as the spec recommends.
func (s *Service) DeleteAlias(userID string, admin bool, alias string) error {
	if _, _, err := ParseAlias(alias); err != nil {
		return err
	}
	var seen *store.Alias
	err := s.store.View(func(tx *store.Tx) error {
		a, err := tx.AliasByName(alias)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("Room alias %s not found", alias)
		}
		if err != nil {
			return err
		}
		seen = a
		if admin || a.Creator == userID {
			return nil
		}
		room, err := tx.RoomByID(a.RoomID)
		if err != nil {
			return err
		}
		if !joined(tx, userID, room) {
			return mxerr.Forbidden("You don't have permission to delete the alias")
		}
		ok, err := s.mayEditDirectory(tx, room, userID)
		if err == nil && !ok {
			err = mxerr.Forbidden("You don't have permission to delete the alias")
		}
		return err
	})
	if err != nil {
		return err
	}
	err = s.store.Update(func(tx *store.Tx) error {
		// The permission was checked against the alias as it was then.
		if a, err := tx.AliasByName(alias); err != nil || *a != *seen {
			return mxerr.NotFound("Room alias %s not found", alias)
		}
		_, err := tx.DeleteAlias(alias)
		return err
	})
	if err != nil {
		return err
	}
	s.dropCanonicalAlias(userID, seen.RoomID, alias)
	return nil
}

// dropCanonicalAlias sends an m.room.canonical_alias event without alias
// when the current one names it. A failure is only logged: the alias is
// gone either way.
func (s *Service) dropCanonicalAlias(userID, roomID, alias string) {
	var content map[string]json.RawMessage
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err != nil {
			return err
		}
		return s.stateContent(tx, room, "m.room.canonical_alias", "", &content)
	})
	if err != nil || content == nil {
		return
	}
	changed := false
	var cur string
	if json.Unmarshal(content["alias"], &cur) == nil && cur == alias {
		delete(content, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(content["alt_aliases"], &alt) == nil && slices.Contains(alt, alias) {
		alt = slices.DeleteFunc(alt, func(a string) bool { return a == alias })
		if len(alt) == 0 {
			delete(content, "alt_aliases")
		} else {
			content["alt_aliases"], _ = json.Marshal(alt)
		}
		changed = true
	}
	if !changed {
		return
	}
	b, err := json.Marshal(content)
	if err != nil {
		return
	}
	empty := ""
	if _, err := s.Send(roomID, &Draft{Sender: userID, Type: "m.room.canonical_alias", StateKey: &empty, Content: b}); err != nil {
		s.log.Info("deleted alias stays in m.room.canonical_alias", "room", roomID, "alias", alias, "user", userID, "err", err)
	}
}

// LocalAliases returns the local aliases of a room, to its joined members,
// to anyone while its history is world_readable, and to server admins.
func (s *Service) LocalAliases(userID string, admin bool, roomID string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if errors.Is(err, store.ErrNotFound) {
			if admin {
				return mxerr.NotFound("Room not found")
			}
			return mxerr.Forbidden("You are not a member of the room")
		}
		if err != nil {
			return err
		}
		if !admin && !joined(tx, userID, room) {
			var hv struct {
				V string `json:"history_visibility"`
			}
			if err := s.stateContent(tx, room, "m.room.history_visibility", "", &hv); err != nil {
				return err
			}
			if hv.V != "world_readable" {
				return mxerr.Forbidden("You are not a member of the room")
			}
		}
		out, err = tx.RoomAliases(room.NID)
		return err
	})
	return out, err
}

// mayEditDirectory reports whether userID may edit a room's directory
// entries (publish it, delete others' aliases): Synapse asks that they
// could send m.room.canonical_alias, which we learn by building such an
// event and checking it against the auth rules, so that room-version
// rules (v12's privileged creators) apply without being repeated here.
// The trial event is never stored.
func (s *Service) mayEditDirectory(tx *store.Tx, room *store.Room, userID string) (bool, error) {
	empty := ""
	d := &Draft{Sender: userID, Type: "m.room.canonical_alias", StateKey: &empty, Content: json.RawMessage(`{}`)}
	h, err := s.loadHead(tx, room, d)
	if err != nil {
		return false, err
	}
	_, err = s.build(h, d)
	if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" {
		return false, nil
	}
	return err == nil, err
}

// canonicalAlias is the content of m.room.canonical_alias, read leniently
// (for the state an event replaces) or strictly (for a new event).
type canonicalAlias struct {
	alias string
	alt   []string
}

func parseCanonicalAlias(content []byte, strict bool) (*canonicalAlias, error) {
	var raw struct {
		Alias json.RawMessage `json:"alias"`
		Alt   json.RawMessage `json:"alt_aliases"`
	}
	out := &canonicalAlias{}
	if err := json.Unmarshal(content, &raw); err != nil {
		return out, mxerr.BadJSON("Invalid m.room.canonical_alias content")
	}
	if len(raw.Alias) > 0 && string(raw.Alias) != "null" {
		if err := json.Unmarshal(raw.Alias, &out.alias); err != nil && strict {
			return nil, mxerr.InvalidParam("The alias property must be a string")
		}
	}
	if len(raw.Alt) > 0 && string(raw.Alt) != "null" {
		if err := json.Unmarshal(raw.Alt, &out.alt); err != nil {
			if strict {
				return nil, mxerr.InvalidParam("The alt_aliases property must be a list of strings")
			}
			out.alt = nil // an unknown form is replaced as a whole
		}
	}
	return out, nil
}

// newAliases returns the aliases content names that prev did not: only
// those are checked, as in Synapse, so that an alias deleted since it was
// set does not block every later change of the event.
func (c *canonicalAlias) newAliases(prev *canonicalAlias) []string {
	var out []string
	if c.alias != "" && c.alias != prev.alias {
		out = append(out, c.alias)
	}
	for _, a := range c.alt {
		if !slices.Contains(prev.alt, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// checkCanonicalAlias validates a new m.room.canonical_alias content
// against the one it replaces: every alias it adds must be well formed
// (M_INVALID_PARAM) and, if local, point to the room (M_BAD_ALIAS).
// pointsHere says whether a local alias points to the room. Aliases of
// other servers are only checked for form until federation can ask.
func (s *Service) checkCanonicalAlias(content, prev []byte, pointsHere func(alias string) (bool, error)) error {
	next, err := parseCanonicalAlias(content, true)
	if err != nil {
		return err
	}
	old := &canonicalAlias{}
	if prev != nil {
		old, _ = parseCanonicalAlias(prev, false)
	}
	for _, a := range next.newAliases(old) {
		_, server, err := ParseAlias(a)
		if err != nil {
			return err
		}
		if server != s.serverName {
			continue
		}
		ok, err := pointsHere(a)
		if err != nil {
			return err
		}
		if !ok {
			return badAlias(a)
		}
	}
	return nil
}

// validateStateEvent checks what the auth rules cannot: that a new
// m.room.canonical_alias event names only aliases of the room. It runs in
// the transaction that appends the event, so an alias cannot be deleted
// between the check and the append.
func (s *Service) validateStateEvent(tx *store.Tx, room *store.Room, typ string, stateKey *string, content []byte) error {
	if typ != "m.room.canonical_alias" || stateKey == nil || *stateKey != "" {
		return nil
	}
	var prev []byte
	if ev, err := s.stateEvent(tx, room, "m.room.canonical_alias", ""); err == nil {
		prev = ev.Content()
	} else if e, ok := mxerr.As(err); !ok || e.Code != "M_NOT_FOUND" {
		return err
	}
	return s.checkCanonicalAlias(content, prev, func(alias string) (bool, error) {
		a, err := tx.AliasByName(alias)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil && a.RoomID == room.RoomID, err
	})
}

// checkInitialState validates an m.room.canonical_alias of createRoom's
// initial_state: the only local alias that can point to a room not yet
// created is its own room_alias_name (alias, "" for none).
func (s *Service) checkInitialState(h *head, alias, typ, key string, content []byte) error {
	if typ != "m.room.canonical_alias" || key != "" {
		return nil
	}
	var prev []byte
	if ev := h.state[pdu.StateKey{Type: typ}]; ev != nil {
		prev = ev.Content()
	}
	return s.checkCanonicalAlias(content, prev, func(a string) (bool, error) { return alias != "" && a == alias, nil })
}

// newRoomAlias returns the alias createRoom's room_alias_name asks for
// ("" for none): 400 M_INVALID_PARAM when malformed, and M_ROOM_IN_USE
// when taken, checked before any event is built. The transaction that
// creates the room checks again.
func (s *Service) newRoomAlias(localpart string) (string, error) {
	if localpart == "" {
		return "", nil
	}
	alias := "#" + localpart + ":" + s.serverName
	if strings.Contains(localpart, ":") {
		return "", mxerr.InvalidParam("room_alias_name may not contain ':'")
	}
	if _, err := parseNewAlias(alias); err != nil {
		return "", err
	}
	err := s.store.View(func(tx *store.Tx) error {
		_, err := tx.AliasByName(alias)
		if err == nil {
			return roomInUse()
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	return alias, err
}

func roomInUse() *mxerr.Error {
	return &mxerr.Error{Status: http.StatusBadRequest, Code: "M_ROOM_IN_USE", Message: "Room alias already taken"}
}

// addToDirectory records, in the transaction that creates a room, its
// alias from room_alias_name (M_ROOM_IN_USE if taken meanwhile, which
// aborts the whole creation) and its publication for visibility public.
func (s *Service) addToDirectory(tx *store.Tx, room *store.Room, creator, alias string, publish bool) error {
	if alias != "" {
		err := tx.PutAlias(&store.Alias{Alias: alias, RoomID: room.RoomID, Creator: creator})
		if errors.Is(err, store.ErrExists) {
			return roomInUse()
		}
		if err != nil {
			return err
		}
	}
	if publish {
		return tx.SetPublished(room.NID, true)
	}
	return nil
}

// moveDirectory hands a room's local aliases and its place in the public
// room directory to its replacement, in the upgrade's transaction (spec:
// "Room Upgrades").
func moveDirectory(tx *store.Tx, old, replacement *store.Room) error {
	if err := tx.MoveAliases(old, replacement); err != nil {
		return err
	}
	if tx.IsPublished(old.NID) {
		if err := tx.SetPublished(old.NID, false); err != nil {
			return err
		}
		return tx.SetPublished(replacement.NID, true)
	}
	return nil
}
