// Package filter holds the spec's event filters ("Filtering"): which
// events, of which types and senders, in which rooms, a client wants.
package filter

import (
	"encoding/json"
	"fmt"
	"strings"
)

// RoomEvent is the spec's RoomEventFilter.
type RoomEvent struct {
	Limit                   *int     `json:"limit,omitempty"`
	Types                   []string `json:"types,omitempty"`
	NotTypes                []string `json:"not_types,omitempty"`
	Senders                 []string `json:"senders,omitempty"`
	NotSenders              []string `json:"not_senders,omitempty"`
	Rooms                   []string `json:"rooms,omitempty"`
	NotRooms                []string `json:"not_rooms,omitempty"`
	ContainsURL             *bool    `json:"contains_url,omitempty"`
	LazyLoadMembers         bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers bool     `json:"include_redundant_members,omitempty"`
	// UnreadThreadNotifications asks sync for unread counts per thread.
	UnreadThreadNotifications bool `json:"unread_thread_notifications,omitempty"`
}

// ParseRoomEvent reads a RoomEventFilter from JSON ("" is the empty filter).
func ParseRoomEvent(s string) (*RoomEvent, error) {
	f := &RoomEvent{}
	if s == "" {
		return f, nil
	}
	if err := json.Unmarshal([]byte(s), f); err != nil {
		return nil, err
	}
	return f, nil
}

// Match reports whether an event passes the filter. content is the
// event's content, read only when contains_url is set.
func (f *RoomEvent) Match(roomID, typ, sender string, content []byte) bool {
	if f == nil {
		return true
	}
	if len(f.Rooms) > 0 && !contains(f.Rooms, roomID) || contains(f.NotRooms, roomID) {
		return false
	}
	if len(f.Senders) > 0 && !contains(f.Senders, sender) || contains(f.NotSenders, sender) {
		return false
	}
	if len(f.Types) > 0 && !matchesAny(f.Types, typ) || matchesAny(f.NotTypes, typ) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL any `json:"url"`
		}
		_ = json.Unmarshal(content, &c)
		_, hasURL := c.URL.(string)
		if hasURL != *f.ContainsURL {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// matchesAny matches event types, where a trailing "*" matches any rest
// ("m.room.*"), as the spec allows.
func matchesAny(patterns []string, typ string) bool {
	for _, p := range patterns {
		if p == typ || strings.HasSuffix(p, "*") && strings.HasPrefix(typ, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

// Filter is the spec's sync filter, as uploaded with POST /filter or given
// inline to /sync.
type Filter struct {
	EventFields []string `json:"event_fields,omitempty"`
	EventFormat string   `json:"event_format,omitempty"`
	Presence    *Event   `json:"presence,omitempty"`
	AccountData *Event   `json:"account_data,omitempty"`
	Room        *Room    `json:"room,omitempty"`
}

// Event is the spec's EventFilter (presence, account data).
type Event struct {
	Limit      *int     `json:"limit,omitempty"`
	Types      []string `json:"types,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
}

// Room is the spec's RoomFilter.
type Room struct {
	Rooms        []string   `json:"rooms,omitempty"`
	NotRooms     []string   `json:"not_rooms,omitempty"`
	IncludeLeave bool       `json:"include_leave,omitempty"`
	Timeline     *RoomEvent `json:"timeline,omitempty"`
	State        *RoomEvent `json:"state,omitempty"`
	Ephemeral    *RoomEvent `json:"ephemeral,omitempty"`
	AccountData  *RoomEvent `json:"account_data,omitempty"`
}

// Parse reads a sync filter.
func Parse(js []byte) (*Filter, error) {
	f := &Filter{}
	if err := json.Unmarshal(js, f); err != nil {
		return nil, err
	}
	return f, nil
}

// TimelineLimit returns the filter's timeline limit (at most 1,000), or def.
func (f *Filter) TimelineLimit(def int) int {
	if f != nil && f.Room != nil && f.Room.Timeline != nil && f.Room.Timeline.Limit != nil && *f.Room.Timeline.Limit >= 0 {
		return min(*f.Room.Timeline.Limit, 1000) // 0 is allowed: no timeline, state only
	}
	return def
}

// RoomAllowed reports whether the room filter lets a room through.
func (f *Filter) RoomAllowed(roomID string) bool {
	if f == nil || f.Room == nil {
		return true
	}
	if len(f.Room.Rooms) > 0 && !contains(f.Room.Rooms, roomID) {
		return false
	}
	return !contains(f.Room.NotRooms, roomID)
}

// Match reports whether an event of type typ from sender passes an
// EventFilter (presence, account data). A nil filter passes everything.
func (f *Event) Match(typ, sender string) bool {
	if f == nil {
		return true
	}
	if len(f.Senders) > 0 && !contains(f.Senders, sender) || contains(f.NotSenders, sender) {
		return false
	}
	return !(len(f.Types) > 0 && !matchesAny(f.Types, typ) || matchesAny(f.NotTypes, typ))
}

// Section filters of a sync filter; each is nil when the filter has none.

// StateFilter returns room.state.
func (f *Filter) StateFilter() *RoomEvent {
	if f == nil || f.Room == nil {
		return nil
	}
	return f.Room.State
}

// EphemeralFilter returns room.ephemeral.
func (f *Filter) EphemeralFilter() *RoomEvent {
	if f == nil || f.Room == nil {
		return nil
	}
	return f.Room.Ephemeral
}

// RoomAccountDataFilter returns room.account_data.
func (f *Filter) RoomAccountDataFilter() *RoomEvent {
	if f == nil || f.Room == nil {
		return nil
	}
	return f.Room.AccountData
}

// Validate checks what the spec constrains beyond JSON types: room and
// user IDs where IDs are expected, a known event_format, no negative
// limit. It returns the first problem found.
func (f *Filter) Validate() error {
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return fmt.Errorf("event_format must be client or federation")
	}
	for _, e := range []*Event{f.Presence, f.AccountData} {
		if e != nil {
			if err := validateEvent(e.Limit, e.Senders, e.NotSenders); err != nil {
				return err
			}
		}
	}
	if f.Room == nil {
		return nil
	}
	if err := validateIDs(f.Room.Rooms, "!", "rooms"); err != nil {
		return err
	}
	if err := validateIDs(f.Room.NotRooms, "!", "not_rooms"); err != nil {
		return err
	}
	for _, re := range []*RoomEvent{f.Room.Timeline, f.Room.State, f.Room.Ephemeral, f.Room.AccountData} {
		if re == nil {
			continue
		}
		if err := validateEvent(re.Limit, re.Senders, re.NotSenders); err != nil {
			return err
		}
		if err := validateIDs(re.Rooms, "!", "rooms"); err != nil {
			return err
		}
		if err := validateIDs(re.NotRooms, "!", "not_rooms"); err != nil {
			return err
		}
	}
	return nil
}

func validateEvent(limit *int, senders, notSenders []string) error {
	if limit != nil && *limit < 0 {
		return fmt.Errorf("limit must not be negative")
	}
	if err := validateIDs(senders, "@", "senders"); err != nil {
		return err
	}
	return validateIDs(notSenders, "@", "not_senders")
}

func validateIDs(ids []string, sigil, field string) error {
	for _, id := range ids {
		if !strings.HasPrefix(id, sigil) || !strings.Contains(id, ":") && sigil == "@" {
			return fmt.Errorf("%s holds %q, which is not a valid ID", field, id)
		}
	}
	return nil
}
