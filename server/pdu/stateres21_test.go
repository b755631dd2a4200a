package pdu

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// Room version 12 resolves state with algorithm 2.1 (MSC4297). These are
// the two problems the MSC solves, as Complement's
// TestMSC4297StateResolutionV2_1_starts_from_empty_set and
// TestMSC4297StateResolutionV2_1_includes_conflicted_subgraph play them
// against a server: a peer answers /state_ids with a stale event for one
// key, and the resolution must not reset the room.

// resolveRoom is a v12 room built event by event, remembering every event
// as the auth events a resolution may need.
type resolveRoom struct {
	*authRoom
	all []*Event
}

func newResolveRoom(t testing.TB, creator string) *resolveRoom {
	r := &resolveRoom{authRoom: newAuthRoom(t, "12", &authEvent{Sender: creator})}
	r.all = append(r.all, r.last)
	return r
}

func (r *resolveRoom) add(t testing.TB, sender, typ, stateKey string, content any) *Event {
	t.Helper()
	// Events a millisecond apart, as a room's events are: the orderings
	// break ties by origin_server_ts before they fall back to event IDs.
	time.Sleep(2 * time.Millisecond)
	r.authRoom.add(t, authEvent{Type: typ, StateKey: &stateKey, Sender: sender, Content: mustJSON(t, content)})
	r.all = append(r.all, r.last)
	return r.last
}

func (r *resolveRoom) join(t testing.TB, user string) *Event {
	return r.add(t, user, "m.room.member", user, map[string]any{"membership": "join"})
}

// resolve runs the resolution both ways round: the answer must not depend
// on the order of the state sets.
func (r *resolveRoom) resolve(t *testing.T, sets ...[]*Event) map[StateKey]*Event {
	t.Helper()
	var first map[StateKey]*Event
	reversed := slices.Clone(sets)
	slices.Reverse(reversed)
	for _, order := range [][][]*Event{sets, reversed} {
		out, err := Resolve("12", order, r.all, nil)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		m := map[StateKey]*Event{}
		for _, e := range out {
			m[StateKey{e.Type(), *e.StateKey()}] = e
		}
		if first == nil {
			first = m
			continue
		}
		if len(m) != len(first) {
			t.Fatalf("resolution depends on the order of the state sets: %d and %d entries", len(first), len(m))
		}
		for k, e := range m {
			if first[k] == nil || first[k].ID() != e.ID() {
				t.Fatalf("resolution depends on the order of the state sets at %v", k)
			}
		}
	}
	return first
}

func (r *resolveRoom) stateWith(replace ...*Event) []*Event {
	state := map[StateKey]*Event{}
	for k, e := range r.state {
		state[k] = e
	}
	for _, e := range replace {
		state[StateKey{e.Type(), *e.StateKey()}] = e
	}
	out := make([]*Event, 0, len(state))
	for _, e := range state {
		out = append(out, e)
	}
	return out
}

// The iterative auth checks start from an empty state: alice made the
// room invite-only and then left; a stale state set still shows the public
// join rule. Starting from the unconflicted state (alice gone), algorithm
// 2 refuses both join-rule events and the room loses its join rule; 2.1
// checks them against their own auth events, where alice was in the room.
func TestStateResV21StartsFromEmptySet(t *testing.T) {
	const alice, bob, charlie = "@alice:hs.test", "@bob:hs.test", "@charlie:other.test"
	r := newResolveRoom(t, alice)
	r.join(t, alice)
	r.add(t, alice, "m.room.power_levels", "", map[string]any{"users": map[string]any{}})
	public := r.add(t, alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	r.join(t, bob)
	r.join(t, charlie)
	invite := r.add(t, alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	leave := r.add(t, alice, "m.room.member", alice, map[string]any{"membership": "leave"})

	got := r.resolve(t, r.stateWith(), r.stateWith(public))
	if jr := got[StateKey{"m.room.join_rules", ""}]; jr == nil || jr.ID() != invite.ID() {
		t.Fatalf("join rules resolved to %v, want the invite-only rule %s", idOf(jr), invite.ID())
	}
	if m := got[StateKey{"m.room.member", alice}]; m == nil || m.ID() != leave.ID() {
		t.Fatalf("alice's membership resolved to %v, want her leave (unconflicted state applies last)", idOf(m))
	}
}

// The conflicted state subgraph is replayed: bob's power levels (the
// third) were authorised by alice's (the second), which lies on the auth
// path between the two conflicted power levels events. A stale state set
// shows the first. Without the second in the full conflicted set, bob has
// no power when his event is checked and the room falls back to the first
// power levels.
func TestStateResV21IncludesConflictedSubgraph(t *testing.T) {
	const creator, alice, bob, zara = "@creator:hs.test", "@alice:hs.test", "@bob:hs.test", "@zara:hs.test"
	const charlie, eve = "@charlie:other.test", "@eve:other.test"
	r := newResolveRoom(t, creator)
	r.join(t, creator)
	pl1 := r.add(t, creator, "m.room.power_levels", "", map[string]any{"users": map[string]any{alice: 100}})
	r.add(t, creator, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	r.join(t, alice)
	r.join(t, bob)
	r.join(t, charlie)
	r.add(t, alice, "m.room.power_levels", "", map[string]any{"users": map[string]any{alice: 100, bob: 50}})
	pl3 := r.add(t, bob, "m.room.power_levels", "", map[string]any{"users": map[string]any{alice: 100, bob: 50, charlie: 50}})
	current := r.stateWith()
	r.join(t, zara)
	eveJoin := r.join(t, eve)
	current = append(current, r.state[StateKey{"m.room.member", zara}], eveJoin)
	var eveLast *Event
	for i := range 3 {
		eveLast = r.add(t, eve, "m.room.member", eve, map[string]any{"membership": "join", "displayname": "Eve " + string(rune('0'+i))})
	}
	stale := []*Event{eveLast, pl1}
	for _, k := range []StateKey{{"m.room.create", ""}, {"m.room.member", alice}, {"m.room.join_rules", ""}, {"m.room.member", bob}, {"m.room.member", charlie}} {
		stale = append(stale, r.state[k])
	}

	got := r.resolve(t, current, stale)
	pl := got[StateKey{"m.room.power_levels", ""}]
	if pl == nil || pl.ID() != pl3.ID() {
		var users map[string]any
		if pl != nil {
			var c struct {
				Users map[string]any `json:"users"`
			}
			_ = json.Unmarshal(pl.Content(), &c)
			users = c.Users
		}
		t.Fatalf("power levels resolved to %v (users %v), want bob's %s giving charlie 50", idOf(pl), users, pl3.ID())
	}
	if m := got[StateKey{"m.room.member", eve}]; m == nil {
		t.Fatalf("eve is not in the resolved state")
	}
}

func idOf(e *Event) string {
	if e == nil {
		return "<none>"
	}
	return e.ID()
}

// The auth difference counts the whole auth chain of each state set,
// that of its unconflicted state too, which the caller does not load in
// full (a room's every member): what the unconflicted state reaches only
// through events not at hand is loaded as needed. carol's join is in the
// chain of her topic (one set's) and, through two renames, of her current
// member event (both sets'): it is no part of the difference.
func TestStateResV21AuthDifferenceLoadsUnconflictedChain(t *testing.T) {
	const alice, bob, carol = "@alice:hs.test", "@bob:hs.test", "@carol:other.test"
	r := newResolveRoom(t, alice)
	r.join(t, alice)
	r.add(t, alice, "m.room.power_levels", "", map[string]any{"users": map[string]any{}, "state_default": 0})
	r.add(t, alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	r.join(t, bob)
	carolJoin := r.join(t, carol)
	topicC := r.add(t, carol, "m.room.topic", "", map[string]any{"topic": "carol's"})
	rename := r.add(t, carol, "m.room.member", carol, map[string]any{"membership": "join", "displayname": "C"})
	r.add(t, carol, "m.room.member", carol, map[string]any{"membership": "join", "displayname": "Carol"})
	topicB := r.add(t, bob, "m.room.topic", "", map[string]any{"topic": "bob's"})
	setA, setB := r.stateWith(topicC), r.stateWith(topicB)

	resolver := func(load bool) *resolver21 {
		res := &resolver21{byID: map[string]gmsl.PDU{}}
		for _, e := range r.all {
			if e.ID() != rename.ID() { // not at hand: only the unconflicted state reaches it
				res.byID[e.ID()] = e.p
			}
		}
		if load {
			res.load = func(id string) gmsl.PDU {
				if id == rename.ID() {
					return rename.p
				}
				return nil
			}
		}
		return res
	}
	sets := [][]gmsl.PDU{pdus(setA), pdus(setB)}
	unconflicted := map[stateKeyOf]gmsl.PDU{}
	for _, e := range setA {
		if slices.ContainsFunc(setB, func(b *Event) bool { return b.ID() == e.ID() }) {
			unconflicted[keyOf(e.p)] = e.p
		}
	}
	conflicted := map[string]bool{topicC.ID(): true, topicB.ID(): true}
	if diff := resolver(true).authDifference(sets, unconflicted, conflicted); diff[carolJoin.ID()] || !diff[topicC.ID()] || !diff[topicB.ID()] {
		t.Errorf("auth difference %v: want both topics and not carol's join %s", diff, carolJoin.ID())
	}
	// Without the chain loaded, her join would count (as it did).
	if diff := resolver(false).authDifference(sets, unconflicted, conflicted); !diff[carolJoin.ID()] {
		t.Errorf("the test does not need the load: %v", diff)
	}
}

func pdus(evs []*Event) []gmsl.PDU {
	out := make([]gmsl.PDU, len(evs))
	for i, e := range evs {
		out[i] = e.p
	}
	return out
}

// One fork in a room of 5,000 members: one server's state has a new
// member the other's lacks. The caller hands over the new member's auth
// chain and loads the rest on demand, as the room core does.
//
//	go test -run '^$' -bench ResolveV21 ./server/pdu/
func BenchmarkResolveV21OneNewMember(b *testing.B) {
	const members = 5000
	t := b
	r := newResolveRoom(t, "@alice:hs.test")
	r.join(t, "@alice:hs.test")
	r.add(t, "@alice:hs.test", "m.room.power_levels", "", map[string]any{"users": map[string]any{}})
	r.add(t, "@alice:hs.test", "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	for i := range members - 1 {
		r.authRoom.add(t, authEvent{Type: "m.room.member", StateKey: str(fmt.Sprintf("@u%d:hs.test", i)), Sender: fmt.Sprintf("@u%d:hs.test", i), Content: mustJSON(t, map[string]any{"membership": "join"})})
		r.all = append(r.all, r.last)
	}
	without := r.stateWith()
	joiner := r.join(t, "@new:other.test")
	with := r.stateWith()
	byID := map[string]*Event{}
	for _, e := range r.all {
		byID[e.ID()] = e
	}
	var chain []*Event
	for _, id := range joiner.AuthEventIDs() {
		chain = append(chain, byID[id])
	}
	loads := 0
	load := func(id string) *Event { loads++; return byID[id] }
	b.ResetTimer()
	for range b.N {
		out, err := Resolve("12", [][]*Event{with, without}, chain, load)
		if err != nil || len(out) != len(with) {
			b.Fatalf("resolved %d events, %v; want %d", len(out), err, len(with))
		}
	}
	b.ReportMetric(float64(loads)/float64(b.N), "loads/op")
}
