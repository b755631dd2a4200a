package keys

import (
	"slices"
	"strconv"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// DeviceLists is the device_lists section of /sync and the answer of
// /keys/changes.
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// Empty reports whether there is nothing to tell.
func (d *DeviceLists) Empty() bool { return len(d.Changed) == 0 && len(d.Left) == 0 }

// DeviceLists returns what changed in (since, upto] for userID's view of
// others' devices:
//   - changed: users sharing a room with userID (and userID themself)
//     whose devices, device keys or cross-signing keys changed; and users
//     who came to share a room with userID (they joined one of userID's
//     rooms, or userID joined theirs): a client that does not fetch a new
//     room member's keys encrypts without them, the classic cause of
//     "unable to decrypt";
//   - left: users who shared a room with userID and no longer share any.
//
// Remote users' changes enter the same stream (store.RecordDeviceListChange)
// once federation delivers them.
func (s *Service) DeviceLists(userID string, since, upto uint64) (*DeviceLists, error) {
	out := &DeviceLists{Changed: []string{}, Left: []string{}}
	err := s.store.View(func(tx *store.Tx) error {
		ms, err := tx.Memberships(userID)
		if err != nil {
			return err
		}
		shared := map[string]bool{userID: true}                    // users sharing a room now
		changed, maybeLeft := map[string]bool{}, map[string]bool{} // before filtering
		var quiet []uint64                                         // joined rooms with no news
		for _, m := range ms {
			mineChanged := m.Pos > since && m.Pos <= upto
			iLeft := mineChanged && (m.Membership == "leave" || m.Membership == "ban")
			if m.Membership != "join" && !iLeft {
				continue
			}
			active := m.Membership == "join" && !mineChanged && tx.RoomActiveSince(m.RoomNID, since, upto)
			if m.Membership == "join" && !mineChanged && !active {
				quiet = append(quiet, m.RoomNID)
				continue
			}
			members, err := roomMembers(tx, m.RoomNID)
			if err != nil {
				return err
			}
			for u, um := range members {
				sharing := um.Membership == "join" || um.Membership == "invite"
				theirsChanged := um.Pos > since && um.Pos <= upto
				switch {
				case m.Membership == "join" && sharing:
					shared[u] = true
					if mineChanged || theirsChanged {
						changed[u] = true // newly sharing this room
					}
				case m.Membership == "join" && theirsChanged:
					maybeLeft[u] = true // they left a room of mine
				case iLeft && sharing:
					maybeLeft[u] = true // I left a room of theirs
				}
			}
		}
		keyChanges := tx.DeviceListChanges(since, upto)
		if len(keyChanges) == 0 && len(maybeLeft) == 0 {
			quiet = nil // who else shares a room does not matter: the common, cheap case
		}
		for _, nid := range quiet {
			members, err := roomMembers(tx, nid)
			if err != nil {
				return err
			}
			for u, um := range members {
				if um.Membership == "join" || um.Membership == "invite" {
					shared[u] = true
				}
			}
		}
		for _, u := range keyChanges {
			if shared[u] {
				changed[u] = true
			}
		}
		for u := range changed {
			out.Changed = append(out.Changed, u)
		}
		for u := range maybeLeft {
			if !shared[u] {
				out.Left = append(out.Left, u)
			}
		}
		return nil
	})
	slices.Sort(out.Changed)
	slices.Sort(out.Left)
	return out, err
}

// roomMembers returns the memberships of everyone with a member event in a
// room's current state.
func roomMembers(tx *store.Tx, roomNID uint64) (map[string]*store.Membership, error) {
	state, err := tx.CurrentState(roomNID, "m.room.member")
	if err != nil {
		return nil, err
	}
	out := make(map[string]*store.Membership, len(state))
	for sk := range state {
		m, err := tx.MembershipOf(sk.Key, roomNID)
		if err != nil {
			continue // a member index the store is still writing: seen next time
		}
		out[sk.Key] = m
	}
	return out, nil
}

// changes is GET /keys/changes: the users whose keys changed between two
// sync tokens, and those no longer sharing a room.
func (s *Service) changes(r *httpx.Request) (*DeviceLists, error) {
	var latest uint64
	_ = s.store.View(func(tx *store.Tx) error { latest = tx.LatestPos(); return nil })
	from, err := tokenPos(r.Query("from"), "from")
	if err != nil {
		return nil, err
	}
	to := latest
	if r.Query("to") != "" {
		if to, err = tokenPos(r.Query("to"), "to"); err != nil {
			return nil, err
		}
	}
	to = min(to, latest)
	if from >= to {
		return &DeviceLists{Changed: []string{}, Left: []string{}}, nil
	}
	return s.DeviceLists(r.Principal.UserID, from, to)
}

// tokenPos reads the stream position of a sync token ("s<pos>_...").
func tokenPos(tok, param string) (uint64, error) {
	if tok == "" {
		return 0, mxerr.MissingParam("Missing %s", param)
	}
	head, _, _ := strings.Cut(tok, "_")
	pos, err := strconv.ParseUint(strings.TrimPrefix(head, "s"), 10, 64)
	if err != nil || !strings.HasPrefix(head, "s") {
		return 0, mxerr.InvalidParam("%s is not a sync token", param)
	}
	return pos, nil
}
