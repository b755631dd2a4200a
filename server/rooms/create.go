package rooms

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"maps"
	"slices"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Presets of createRoom.
const (
	PresetPrivate        = "private_chat"
	PresetTrustedPrivate = "trusted_private_chat"
	PresetPublic         = "public_chat"
)

// StateDraft is one event of createRoom's initial_state.
type StateDraft struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is a createRoom request, validated by the caller's shape.
type CreateRequest struct {
	Creator            string
	Version            string // "" for the default
	Preset             string // "" to follow Visibility
	Visibility         string // "public" or "private"
	Name, Topic        string
	Invite             []string
	IsDirect           bool
	InitialState       []StateDraft
	CreationContent    map[string]json.RawMessage
	PowerLevelOverride map[string]json.RawMessage
	// CreatorProfile is the creator's displayname and avatar_url for the
	// member event.
	CreatorProfile map[string]string
	// AliasName is room_alias_name: the localpart of a local alias to
	// create for the room, "" for none.
	AliasName string
}

// CreateRoom creates a room with the spec's event sequence (create, the
// creator's join, power levels, canonical alias, preset state,
// initial_state, name, topic, invites) and returns its ID. All events, the
// alias and the directory entry land in one transaction: a refused event
// or a taken alias (M_ROOM_IN_USE) leaves nothing behind.
func (s *Service) CreateRoom(req *CreateRequest) (string, error) {
	version := req.Version
	if version == "" {
		version = pdu.DefaultVersion
	}
	if !pdu.Known(version) {
		return "", &mxerr.Error{Status: 400, Code: "M_UNSUPPORTED_ROOM_VERSION", Message: "Room version " + version + " is not supported"}
	}
	preset := req.Preset
	if preset == "" {
		preset = PresetPrivate
		if req.Visibility == "public" {
			preset = PresetPublic
		}
	}
	var joinRule, guestAccess string
	switch preset {
	case PresetPrivate, PresetTrustedPrivate:
		joinRule, guestAccess = "invite", "can_join"
	case PresetPublic:
		joinRule, guestAccess = "public", "forbidden"
	default:
		return "", mxerr.BadJSON("Unknown preset %q", preset)
	}
	alias, err := s.newRoomAlias(req.AliasName)
	if err != nil {
		return "", err
	}

	h := &head{version: version, state: map[pdu.StateKey]*pdu.Event{}}
	if !pdu.DomainlessRoomIDs(version) {
		h.roomID = "!" + randomID(18) + ":" + s.serverName
	}
	var events []*pdu.Event
	add := func(d *Draft) error {
		d.Sender = req.Creator
		ev, err := s.build(h, d)
		if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" {
			// A new room's own events break the auth rules only through
			// what the request asked (creation_content, the power level
			// override, initial_state): a bad request, as Synapse has it.
			return mxerr.InvalidParam("%s", e.Message)
		}
		if err != nil {
			return err
		}
		events = append(events, ev)
		return nil
	}
	empty := ""
	state := func(typ, key string, content any) *Draft {
		b, _ := json.Marshal(content)
		k := key
		return &Draft{Type: typ, StateKey: &k, Content: b}
	}

	// 1. m.room.create: creation_content, then the fields the server owns.
	create := map[string]any{}
	for k, v := range req.CreationContent {
		create[k] = v
	}
	create["room_version"] = version
	if pdu.CreatorInContent(version) {
		create["creator"] = req.Creator
	}
	creators := []string{req.Creator}
	if pdu.PrivilegedCreators(version) {
		// creation_content's additional creators (checked by the auth
		// rules), and for a trusted private chat the invitees too.
		var extra []string
		if raw, ok := req.CreationContent["additional_creators"]; ok && (json.Unmarshal(raw, &extra) != nil || slices.ContainsFunc(extra, func(u string) bool { return !pdu.ValidUserID(u) })) {
			return "", mxerr.InvalidParam("additional_creators must be a list of user IDs")
		}
		if preset == PresetTrustedPrivate {
			for _, inv := range req.Invite {
				if !slices.Contains(extra, inv) {
					extra = append(extra, inv)
				}
			}
		}
		if len(extra) > 0 {
			create["additional_creators"] = extra
			creators = append(creators, extra...)
		}
	}
	if err := add(state("m.room.create", empty, create)); err != nil {
		return "", err
	}
	// 2. The creator joins.
	member := map[string]any{"membership": "join"}
	for k, v := range req.CreatorProfile {
		if v != "" {
			member[k] = v
		}
	}
	if err := add(state("m.room.member", req.Creator, member)); err != nil {
		return "", err
	}
	// 3. Power levels: the defaults, the preset's, then the override.
	if err := add(state("m.room.power_levels", "", s.powerLevels(version, preset, req, creators))); err != nil {
		return "", err
	}
	// The alias of room_alias_name, which the spec puts here.
	if alias != "" {
		if err := add(state("m.room.canonical_alias", "", map[string]string{"alias": alias})); err != nil {
			return "", err
		}
	}
	// 4. The preset's rules, but those initial_state sets itself (as
	// Synapse leaves them out: the room would get both, one after the
	// other).
	overridden := map[string]bool{}
	for _, st := range req.InitialState {
		if st.StateKey == "" {
			overridden[st.Type] = true
		}
	}
	for _, d := range []*Draft{
		state("m.room.join_rules", "", map[string]string{"join_rule": joinRule}),
		state("m.room.history_visibility", "", map[string]string{"history_visibility": "shared"}),
		state("m.room.guest_access", "", map[string]string{"guest_access": guestAccess}),
	} {
		if d.Type == "m.room.guest_access" && guestAccess != "can_join" {
			continue // absent is forbidden; Synapse sends it only to allow guests
		}
		if overridden[d.Type] {
			continue
		}
		if err := add(d); err != nil {
			return "", err
		}
	}
	// 5. initial_state, which may override the preset's.
	for _, st := range req.InitialState {
		if st.Type == "m.room.create" || st.Type == "m.room.member" || st.Type == "m.room.power_levels" {
			return "", mxerr.BadJSON("initial_state may not contain %s", st.Type)
		}
		content := st.Content
		if content == nil {
			content = json.RawMessage("{}")
		}
		key := st.StateKey
		if err := s.checkInitialState(h, alias, st.Type, key, content); err != nil {
			return "", err
		}
		if err := add(&Draft{Type: st.Type, StateKey: &key, Content: content}); err != nil {
			return "", err
		}
	}
	// 6. Name and topic.
	if req.Name != "" {
		if err := add(state("m.room.name", "", map[string]string{"name": req.Name})); err != nil {
			return "", err
		}
	}
	if req.Topic != "" {
		// The plain topic and its m.topic form (spec v1.15's rich topics).
		topic := map[string]any{"topic": req.Topic, "m.topic": map[string]any{"m.text": []any{map[string]string{"body": req.Topic}}}}
		if err := add(state("m.room.topic", "", topic)); err != nil {
			return "", err
		}
	}
	// 7. Invites of our users; other servers' users are invited through
	// their server (PUT /invite) once the room exists.
	var remoteInvites []string
	for _, invitee := range req.Invite {
		if serverOf(invitee) != s.serverName {
			remoteInvites = append(remoteInvites, invitee)
			continue
		}
		content := map[string]any{"membership": "invite"}
		if req.IsDirect {
			content["is_direct"] = true
		}
		if err := add(state("m.room.member", invitee, content)); err != nil {
			return "", err
		}
	}

	var last uint64
	err = s.store.Update(func(tx *store.Tx) error {
		room, err := tx.CreateRoom(h.roomID, version)
		if errors.Is(err, store.ErrExists) {
			return mxerr.Unknown("Room ID collision; try again")
		}
		if err != nil {
			return err
		}
		if err := s.addToDirectory(tx, room, req.Creator, alias, req.Visibility == "public"); err != nil {
			return err
		}
		for _, ev := range events {
			if last, err = tx.AppendEvent(room, newEvent(ev, nil)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	s.appended(last, h.roomID)
	for _, invitee := range remoteInvites {
		c := &MemberChange{Sender: req.Creator, Target: invitee, Membership: "invite", IsDirect: req.IsDirect}
		if _, err := s.ChangeMembership(h.roomID, c); err != nil {
			s.log.Warn("createRoom: inviting a remote user", "room", h.roomID, "user", invitee, "err", err)
		}
	}
	return h.roomID, nil
}

// powerLevels returns createRoom's power levels: Synapse's defaults, the
// preset's changes, then power_level_content_override.
func (s *Service) powerLevels(version, preset string, req *CreateRequest, creators []string) map[string]any {
	users := map[string]any{}
	if !pdu.PrivilegedCreators(version) {
		// From v12 on, creators outrank everyone without being listed.
		for _, c := range creators {
			users[c] = 100
		}
		if preset == PresetTrustedPrivate {
			for _, inv := range req.Invite {
				users[inv] = 100
			}
		}
	}
	// Anyone may invite to a private chat; in a public one, moderators
	// (Synapse's defaults: its private presets override invite to 0).
	invite := 0
	if preset == PresetPublic {
		invite = 50
	}
	tombstone := 100
	if pdu.PrivilegedCreators(version) {
		tombstone = 150 // above state_default and every ordinary admin
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         invite,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.canonical_alias":    50,
			"m.room.avatar":             50,
			"m.room.tombstone":          tombstone,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"notifications": map[string]any{"room": 50},
	}
	maps.Copy(pl, anyMap(req.PowerLevelOverride))
	return pl
}

func anyMap(m map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// randomID returns n random letters for room IDs of older room versions.
func randomID(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
