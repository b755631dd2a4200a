package filter

import "testing"

func TestRoomEventMatch(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name    string
		f       RoomEvent
		typ     string
		sender  string
		content string
		want    bool
	}{
		{"empty filter", RoomEvent{}, "m.room.message", "@a:x", `{}`, true},
		{"type listed", RoomEvent{Types: []string{"m.room.message"}}, "m.room.message", "@a:x", `{}`, true},
		{"type not listed", RoomEvent{Types: []string{"m.room.message"}}, "m.reaction", "@a:x", `{}`, false},
		{"wildcard", RoomEvent{Types: []string{"m.room.*"}}, "m.room.name", "@a:x", `{}`, true},
		{"not_types wins", RoomEvent{Types: []string{"m.room.*"}, NotTypes: []string{"m.room.member"}}, "m.room.member", "@a:x", `{}`, false},
		{"sender", RoomEvent{Senders: []string{"@b:x"}}, "m.room.message", "@a:x", `{}`, false},
		{"not_sender", RoomEvent{NotSenders: []string{"@a:x"}}, "m.room.message", "@a:x", `{}`, false},
		{"contains_url yes", RoomEvent{ContainsURL: &yes}, "m.room.message", "@a:x", `{"url":"mxc://x/y"}`, true},
		{"contains_url yes, none", RoomEvent{ContainsURL: &yes}, "m.room.message", "@a:x", `{"body":"x"}`, false},
		{"contains_url no", RoomEvent{ContainsURL: &no}, "m.room.message", "@a:x", `{"body":"x"}`, true},
		{"rooms", RoomEvent{Rooms: []string{"!other:x"}}, "m.room.message", "@a:x", `{}`, false},
	}
	for _, tc := range cases {
		if got := tc.f.Match("!r:x", tc.typ, tc.sender, []byte(tc.content)); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}
