package rooms

import (
	"encoding/json"
	"strings"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// checkDraft vets what the auth rules leave to the server before d is
// built, and what they would refuse less helpfully: who may redact what,
// a join's authoriser, a second create event, room version 12 creators
// in the power levels, the relation rules. It returns d with a
// redaction's target where its room version wants it and a join's
// meaningless authoriser gone.
func (s *Service) checkDraft(tx *store.Tx, room *store.Room, d *Draft) (*Draft, error) {
	if d.Type == "m.room.redaction" && d.StateKey == nil {
		return s.checkRedaction(tx, room, d)
	}
	if d.Type == "m.room.member" && d.StateKey != nil {
		return s.checkAuthoriser(tx, room, d)
	}
	if d.Type == "m.room.create" && d.StateKey != nil {
		return nil, mxerr.BadJSON("A room has one create event, sent when it is created")
	}
	if d.Type == "m.room.power_levels" && d.StateKey != nil && pdu.PrivilegedCreators(room.Version) {
		if err := s.checkCreatorsNotListed(tx, room, d.Content); err != nil {
			return nil, err
		}
	}
	return d, s.checkRelation(tx, room, d)
}

// checkCreatorsNotListed refuses, as a bad request, power levels that
// list one of a room version 12 room's creators in users: they outrank
// everyone unlisted, and the auth rules reject listing them.
func (s *Service) checkCreatorsNotListed(tx *store.Tx, room *store.Room, content json.RawMessage) error {
	var pl struct {
		Users map[string]json.RawMessage `json:"users"`
	}
	if json.Unmarshal(content, &pl) != nil {
		return nil // the auth rules refuse it
	}
	creators, err := s.creators(tx, room)
	if err != nil {
		return err
	}
	for _, creator := range creators {
		if _, listed := pl.Users[creator]; listed {
			return mxerr.BadJSON("%s is a creator of the room: creators may not be listed in the power levels", creator)
		}
	}
	return nil
}

// checkAuthoriser drops join_authorised_via_users_server from a join
// this server builds where it means nothing or cannot hold: a join of
// someone already joined (a profile change), or one naming a user of
// another server (or no user at all), whose server's signature other
// servers would look for in vain and so refuse the event. Without it the
// auth rules decide as for any join.
func (s *Service) checkAuthoriser(tx *store.Tx, room *store.Room, d *Draft) (*Draft, error) {
	var content map[string]json.RawMessage
	if json.Unmarshal(d.Content, &content) != nil {
		return d, nil // the auth rules refuse it
	}
	raw, ok := content["join_authorised_via_users_server"]
	var membership, authoriser string
	if !ok || json.Unmarshal(content["membership"], &membership) != nil || membership != "join" {
		return d, nil
	}
	_ = json.Unmarshal(raw, &authoriser)
	joined := false
	if m, err := tx.MembershipOf(*d.StateKey, room.NID); err == nil && m.Membership == "join" {
		joined = true
	}
	if !joined && serverOf(authoriser) == s.serverName && strings.HasPrefix(authoriser, "@") {
		return d, nil
	}
	delete(content, "join_authorised_via_users_server")
	b, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	nd := *d
	nd.Content = b
	return &nd, nil
}
