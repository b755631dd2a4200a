package rooms

import (
	"cmp"
	"encoding/json"
	"slices"

	"hearth/store"
)

// member is one m.room.member entry of a room state.
type member struct {
	userID     string
	membership string
	pos        uint64 // of its member event: the stream order heroes follow
}

// membersIn returns the members of a room state (its m.room.member
// entries) in stream order. It runs on syncs: the memberships are read
// from the stored JSON, not parsed into events, which would also crowd
// the writers' event cache out with a big room's members.
func (s *Service) membersIn(tx *store.Tx, st map[store.StateKey]uint64) ([]member, error) {
	var out []member
	for sk, pos := range st {
		if sk.Type != "m.room.member" {
			continue
		}
		m, err := tx.MembershipAt(pos)
		if err != nil {
			return nil, err
		}
		out = append(out, member{userID: sk.Key, membership: m, pos: pos})
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.pos, b.pos) })
	return out, nil
}

// maxHeroes is how many heroes a room summary names.
const maxHeroes = 5

// heroes returns the users that a client names a room without a name or
// canonical alias after, as user me sees it (the spec's m.heroes): the
// first five joined or invited members in stream order or, when there
// are none, the first five who left or were banned; never me.
func heroes(members []member, me string) []string {
	var present, gone []string
	for _, m := range members {
		if m.userID == me {
			continue
		}
		switch m.membership {
		case "join", "invite":
			present = append(present, m.userID)
		case "leave", "ban":
			gone = append(gone, m.userID)
		}
	}
	if len(present) == 0 {
		present = gone
	}
	return present[:min(maxHeroes, len(present))]
}

// namedByHeroes reports whether clients name a room with state st after
// its heroes: it has neither an m.room.name nor an m.room.canonical_alias
// that names anything (an empty name or alias counts as none, as the spec
// has it).
func (s *Service) namedByHeroes(tx *store.Tx, room *store.Room, st map[store.StateKey]uint64) (bool, error) {
	for _, c := range []struct{ typ, field string }{{"m.room.name", "name"}, {"m.room.canonical_alias", "alias"}} {
		pos, ok := st[store.StateKey{Type: c.typ}]
		if !ok {
			continue
		}
		ev, err := s.heads.event(tx, room.Version, pos)
		if err != nil {
			return false, err
		}
		var content map[string]any
		_ = json.Unmarshal(ev.Content(), &content)
		if v, _ := content[c.field].(string); v != "" {
			return false, nil
		}
	}
	return true, nil
}
