package rooms

import (
	"encoding/json"
	"slices"
	"strings"

	"hearth/store"
)

// DirectoryUser is one result of the user directory.
type DirectoryUser struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SearchUsers is the user directory (Synapse's default scope): users who
// share a room with the searcher or are joined to a public room, whose
// user ID or display name contains every word of term. Exact display name
// or localpart matches come first. It returns at most limit users and
// whether more matched.
func (s *Service) SearchUsers(searcher, term string, limit int) ([]DirectoryUser, bool, error) {
	words := strings.Fields(strings.ToLower(term))
	found := map[string]DirectoryUser{}
	err := s.store.View(func(tx *store.Tx) error {
		mine, err := tx.Memberships(searcher)
		if err != nil {
			return err
		}
		shared := map[uint64]bool{}
		for _, m := range mine {
			if m.Membership == "join" {
				shared[m.RoomNID] = true
			}
		}
		return tx.Rooms(func(room *store.Room) error {
			if !shared[room.NID] {
				var jr joinRulesContent
				if err := s.stateContent(tx, room, "m.room.join_rules", "", &jr); err != nil {
					return err
				}
				if jr.JoinRule != "public" {
					return nil
				}
			}
			members, err := tx.CurrentState(room.NID, "m.room.member")
			if err != nil {
				return err
			}
			for sk, pos := range members {
				if _, seen := found[sk.Key]; seen || sk.Key == searcher {
					continue
				}
				ev, err := s.eventAt(tx, room.Version, pos)
				if err != nil {
					return err
				}
				var c struct {
					Membership  string `json:"membership"`
					DisplayName string `json:"displayname"`
					AvatarURL   string `json:"avatar_url"`
				}
				_ = json.Unmarshal(ev.Content(), &c)
				if c.Membership != "join" || !matchesAll(words, sk.Key, c.DisplayName) {
					continue
				}
				found[sk.Key] = DirectoryUser{UserID: sk.Key, DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
			}
			return nil
		})
	})
	if err != nil {
		return nil, false, err
	}
	out := make([]DirectoryUser, 0, len(found))
	for _, u := range found {
		out = append(out, u)
	}
	exact := func(u DirectoryUser) bool {
		t := strings.ToLower(term)
		return strings.ToLower(u.DisplayName) == t || strings.HasPrefix(strings.ToLower(u.UserID), "@"+t+":")
	}
	slices.SortFunc(out, func(a, b DirectoryUser) int {
		if ea, eb := exact(a), exact(b); ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return strings.Compare(strings.ToLower(a.DisplayName+a.UserID), strings.ToLower(b.DisplayName+b.UserID))
	})
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func matchesAll(words []string, userID, displayName string) bool {
	hay := strings.ToLower(userID + " " + displayName)
	for _, w := range words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}
