package pdu

import (
	"encoding/json"
	"testing"
	"time"
)

// The redaction target is read from where each room version puts it, and
// the redact level decides who may redact others' events: the power
// levels' users before v12, the creators' unlimited power from v12.
func TestRedactionRules(t *testing.T) {
	s := testSigner(t)
	for _, v := range []string{"1", "10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			state, last := chain(t, v, s)
			create, pl := state[StateKey{"m.room.create", ""}], state[StateKey{"m.room.power_levels", ""}]
			var authState []*Event
			for _, e := range state {
				authState = append(authState, e)
			}
			p := &Proto{Version: v, RoomID: create.RoomID(), Sender: "@alice:hs.test", Type: "m.room.redaction",
				PrevEvents: []string{last.ID()}, Depth: last.Depth() + 1, Content: json.RawMessage(`{}`)}
			if RedactsInContent(v) {
				p.Content = json.RawMessage(`{"redacts":"` + last.ID() + `"}`)
			} else {
				p.Redacts = last.ID()
			}
			ev, err := Build(p, authState, s, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if ev.Redacts() != last.ID() {
				t.Fatalf("Redacts() = %q, want %q", ev.Redacts(), last.ID())
			}
			for user, want := range map[string]bool{"@alice:hs.test": true, "@bob:hs.test": false} {
				if ok, err := MayRedactOthers(create, pl, user); err != nil || ok != want {
					t.Errorf("MayRedactOthers(%s) = %v, %v", user, ok, err)
				}
			}
			if ok, _ := MayRedactOthers(create, nil, "@alice:hs.test"); !ok {
				t.Error("the creator may not redact without power levels")
			}
		})
	}
}
