package rooms

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"hearth/server/pdu"
	"hearth/store"
)

// JoinAnswer is a resident server's answer to a send_join.
type JoinAnswer struct {
	// Event is the join as accepted: with our signature when one of our
	// users authorised a restricted join.
	Event *pdu.Event
	// State is the room state before the join; AuthChain the auth chain
	// of the join and of State, oldest first.
	State, AuthChain []json.RawMessage
	// MembersOmitted says State is partial: member events may be left out.
	MembersOmitted bool
	// ServersInRoom are the servers with a joined member before the join,
	// sorted.
	ServersInRoom []string
}

// AcceptJoin takes a join origin signed from MakeMember's template
// (send_join), passes it on to the room's other servers and returns what
// the joining server needs to take the room in.
//
// With omitMembers (the joining server takes a partial state: the
// spec's omit_members, v1.6), State leaves out the member events but
// those the join is authorised by (the joiner's own earlier one, and a
// restricted join's authoriser's, so the joiner can check its join
// against the state) and, when the room has neither a name nor a
// canonical alias, those of the heroes the joiner would be shown;
// AuthChain then leaves out what State holds. The auth chain still
// covers every event sent, so the joiner can check each against its auth
// events. Synapse chooses the same events but the authoriser's.
func (s *Service) AcceptJoin(ctx context.Context, origin, roomID, eventID string, js []byte, omitMembers bool) (*JoinAnswer, error) {
	room, ev, rec, err := s.acceptMember(ctx, origin, roomID, eventID, "join", js)
	if err != nil {
		return nil, err
	}
	// A partial state whenever one was asked for, as Synapse answers,
	// even where nothing had to be left out: the joiner resyncs either way.
	out := &JoinAnswer{Event: ev, MembersOmitted: omitMembers}
	err = s.store.View(func(tx *store.Tx) error {
		st, err := tx.StateAt(rec.StateBefore)
		if err != nil {
			return err
		}
		members, err := s.membersIn(tx, st)
		if err != nil {
			return err
		}
		servers := map[string]bool{}
		for _, m := range members {
			if m.membership == "join" {
				servers[serverOf(m.userID)] = true
			}
		}
		out.ServersInRoom = slices.Sorted(maps.Keys(servers))
		keep := func(store.StateKey) bool { return true }
		if omitMembers {
			kept := map[string]bool{ev.Sender(): true}
			var via struct {
				Authoriser string `json:"join_authorised_via_users_server"`
			}
			if json.Unmarshal(ev.Content(), &via) == nil && via.Authoriser != "" {
				kept[via.Authoriser] = true
			}
			byHeroes, err := s.namedByHeroes(tx, room, st)
			if err != nil {
				return err
			}
			if byHeroes {
				for _, h := range heroes(members, ev.Sender()) {
					kept[h] = true
				}
			}
			keep = func(sk store.StateKey) bool { return sk.Type != "m.room.member" || kept[sk.Key] }
		}
		// The state and its auth chain as every history read serves
		// them: servable events only, the chain oldest first.
		fr, err := s.newFedReader(tx, room, origin)
		if err != nil {
			return err
		}
		roots := []*loaded{{rec: rec, ev: ev}}
		inState := map[string]bool{}
		for sk, pos := range st {
			if !keep(sk) {
				continue
			}
			l, err := fr.findPos(pos)
			if err != nil {
				return err
			}
			if l != nil {
				out.State = append(out.State, l.ev.JSON())
				roots = append(roots, l)
				inState[l.ev.ID()] = true
			}
		}
		chain, err := fr.authChain(roots)
		if err != nil {
			return err
		}
		if omitMembers {
			chain = slices.DeleteFunc(chain, func(l *loaded) bool { return inState[l.ev.ID()] })
		}
		out.AuthChain = rawJSON(chain)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
