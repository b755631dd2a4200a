package rooms

import (
	"encoding/base64"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"hearth/server/mxerr"
	"hearth/store"
)

// MaxPublicRoomsPage bounds one page of /publicRooms, as Synapse does; it
// is also the page size when the client names none.
const MaxPublicRoomsPage = 100

// Visibility returns a room's visibility in the public room directory:
// "public" or "private", or M_NOT_FOUND for an unknown room.
func (s *Service) Visibility(roomID string) (string, error) {
	out := "private"
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		if tx.IsPublished(room.NID) {
			out = "public"
		}
		return nil
	})
	return out, err
}

// SetVisibility publishes a room in the public room directory or takes it
// off. As in Synapse, a server admin may, and so may a joined member with
// the power to send m.room.canonical_alias.
func (s *Service) SetVisibility(userID string, admin bool, roomID string, public bool) error {
	var nid uint64
	err := s.store.View(func(tx *store.Tx) error {
		room, err := knownRoom(tx, roomID)
		if err != nil {
			return err
		}
		nid = room.NID
		if admin {
			return nil
		}
		if !joined(tx, userID, room) {
			return mxerr.Forbidden("You are not in the room")
		}
		ok, err := s.mayEditDirectory(tx, room, userID)
		if err == nil && !ok {
			err = mxerr.Forbidden("This server requires you to be a moderator in the room to edit its room list entry")
		}
		return err
	})
	if err != nil {
		return err
	}
	return s.store.Update(func(tx *store.Tx) error { return tx.SetPublished(nid, public) })
}

// PublicRoom is one entry of /publicRooms, read from the room's current
// state.
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// PublicRoomsQuery is a request for one page of the public room
// directory.
type PublicRoomsQuery struct {
	Server     string // "" or this server: others need federation
	Limit      int    // 0 for MaxPublicRoomsPage
	Since      string // a next_batch or prev_batch token, "" for the first page
	SearchTerm string // filter.generic_search_term
	// RoomTypes is filter.room_types: nil or empty for every room, a nil
	// entry for rooms without a type.
	RoomTypes []*string
	// ThirdPartyInstanceID names an application service's network; this
	// server has none, so such a list is empty.
	ThirdPartyInstanceID string
}

// PublicRoomsPage is one page of /publicRooms.
type PublicRoomsPage struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	// Total counts the rooms matching the filter, on every page.
	Total int `json:"total_room_count_estimate"`
}

// directoryKey is a place in the directory's order: most joined members
// first, then room ID descending (Synapse's order, which keeps a page
// stable while other rooms grow).
type directoryKey struct {
	members int
	roomID  string
}

// before reports whether a comes before b in the directory's order.
func (a directoryKey) before(b directoryKey) bool {
	if a.members != b.members {
		return a.members > b.members
	}
	return a.roomID > b.roomID
}

// Pagination tokens read "f" (the rooms after) or "b" (the rooms before),
// the member count, ".", and the room ID in unpadded base64url.
func directoryToken(forward bool, k directoryKey) string {
	dir := "b"
	if forward {
		dir = "f"
	}
	return dir + strconv.Itoa(k.members) + "." + base64.RawURLEncoding.EncodeToString([]byte(k.roomID))
}

func parseDirectoryToken(tok string) (forward bool, k directoryKey, err error) {
	invalid := mxerr.InvalidParam("Invalid pagination token")
	if tok == "" || (tok[0] != 'f' && tok[0] != 'b') {
		return false, k, invalid
	}
	n, id, ok := strings.Cut(tok[1:], ".")
	members, err1 := strconv.Atoi(n)
	roomID, err2 := base64.RawURLEncoding.DecodeString(id)
	if !ok || err1 != nil || err2 != nil || members < 0 {
		return false, k, invalid
	}
	return tok[0] == 'f', directoryKey{members, string(roomID)}, nil
}

// PublicRooms returns one page of the public room directory: the
// published rooms that anyone may join or knock on, or whose history is
// world_readable (Synapse's rule), matching the filter. The directories of
// other servers need federation, which Hearth does not speak yet: asking
// for one is M_NOT_FOUND, saying so.
func (s *Service) PublicRooms(q *PublicRoomsQuery) (*PublicRoomsPage, error) {
	if q.Server != "" && q.Server != s.serverName {
		return nil, mxerr.NotFound("%s is not this server; its directory is asked over federation", q.Server)
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxPublicRoomsPage {
		limit = MaxPublicRoomsPage
	}
	var (
		forward = true
		key     *directoryKey
	)
	if q.Since != "" {
		f, k, err := parseDirectoryToken(q.Since)
		if err != nil {
			return nil, err
		}
		forward, key = f, &k
	}
	page := &PublicRoomsPage{Chunk: []PublicRoom{}}
	if q.ThirdPartyInstanceID != "" {
		return page, nil
	}
	var all []PublicRoom
	err := s.store.View(func(tx *store.Tx) error {
		nids, err := tx.PublishedRooms()
		if err != nil {
			return err
		}
		for _, nid := range nids {
			room, err := tx.RoomByNID(nid)
			if err != nil {
				return err
			}
			e, err := s.publicRoom(tx, room)
			if err != nil {
				return err
			}
			if listable(e) && e.matches(q) {
				all = append(all, *e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keyOf := func(e *PublicRoom) directoryKey { return directoryKey{e.NumJoinedMembers, e.RoomID} }
	slices.SortFunc(all, func(a, b PublicRoom) int {
		ka, kb := keyOf(&a), keyOf(&b)
		if ka.before(kb) {
			return -1
		}
		if kb.before(ka) {
			return 1
		}
		return 0
	})
	page.Total = len(all)

	// Rooms at or before the token form a prefix of the sorted list, and
	// so do the rooms strictly before it.
	lo, hi := 0, min(limit, len(all))
	switch {
	case key != nil && forward:
		lo = sort.Search(len(all), func(i int) bool { return key.before(keyOf(&all[i])) })
		hi = min(lo+limit, len(all))
	case key != nil:
		hi = sort.Search(len(all), func(i int) bool { return !keyOf(&all[i]).before(*key) })
		lo = max(0, hi-limit)
	}
	page.Chunk = append(page.Chunk, all[lo:hi]...)
	if hi < len(all) {
		after := directoryKey{math.MaxInt, ""} // before every room
		if hi > 0 {
			after = keyOf(&all[hi-1])
		}
		page.NextBatch = directoryToken(true, after)
	}
	if lo > 0 {
		before := directoryKey{0, ""} // after every room
		if lo < len(all) {
			before = keyOf(&all[lo])
		}
		page.PrevBatch = directoryToken(false, before)
	}
	return page, nil
}

// listable is Synapse's rule for which published rooms the directory
// shows: rooms anyone may join or knock on, and world_readable ones.
func listable(e *PublicRoom) bool {
	switch e.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	}
	return e.WorldReadable
}

// matches applies the query's filter: generic_search_term is a
// case-insensitive substring of the name, topic or canonical alias.
func (e *PublicRoom) matches(q *PublicRoomsQuery) bool {
	if len(q.RoomTypes) > 0 && !slices.ContainsFunc(q.RoomTypes, func(t *string) bool {
		return (t == nil && e.RoomType == "") || (t != nil && *t == e.RoomType)
	}) {
		return false
	}
	term := strings.ToLower(strings.TrimSpace(q.SearchTerm))
	if term == "" {
		return true
	}
	for _, field := range []string{e.Name, e.Topic, e.CanonicalAlias} {
		if strings.Contains(strings.ToLower(field), term) {
			return true
		}
	}
	return false
}

// publicRoom reads a room's directory entry from its current state.
func (s *Service) publicRoom(tx *store.Tx, room *store.Room) (*PublicRoom, error) {
	e := &PublicRoom{RoomID: room.RoomID}
	var c struct {
		Type              string `json:"type"`
		Name              string `json:"name"`
		Topic             string `json:"topic"`
		Alias             string `json:"alias"`
		HistoryVisibility string `json:"history_visibility"`
		GuestAccess       string `json:"guest_access"`
		JoinRule          string `json:"join_rule"`
		URL               string `json:"url"`
	}
	for _, f := range []struct {
		typ  string
		into *string
		out  *string
	}{
		{"m.room.create", &c.Type, &e.RoomType},
		{"m.room.name", &c.Name, &e.Name},
		{"m.room.topic", &c.Topic, &e.Topic},
		{"m.room.canonical_alias", &c.Alias, &e.CanonicalAlias},
		{"m.room.join_rules", &c.JoinRule, &e.JoinRule},
		{"m.room.avatar", &c.URL, &e.AvatarURL},
		{"m.room.history_visibility", &c.HistoryVisibility, nil},
		{"m.room.guest_access", &c.GuestAccess, nil},
	} {
		if err := s.stateContent(tx, room, f.typ, "", &c); err != nil {
			return nil, err
		}
		if f.out != nil {
			*f.out = *f.into
		}
	}
	e.WorldReadable = c.HistoryVisibility == "world_readable"
	e.GuestCanJoin = c.GuestAccess == "can_join"
	members, err := s.joinedMembers(tx, room)
	if err != nil {
		return nil, err
	}
	e.NumJoinedMembers = len(members)
	return e, nil
}
