package pdu

import (
	"cmp"
	"container/heap"
	"math"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// State resolution algorithm 2.1 (room version 12, MSC4297), as the spec's
// v12 "State resolution" section gives it. It differs from algorithm 2 in
// two ways: the iterative auth checks start from an empty state map, each
// event taking what the partial state lacks from its own auth events; and
// the full conflicted set also holds the conflicted state subgraph, every
// event on an auth path between two conflicted events.
//
// The pinned gomatrixserverlib has the algorithm but cannot run it for v12
// rooms: with no create event in the partial state it panics when it
// weighs a sender's power, and where it falls back to an event's auth
// events it adds the event itself instead of the auth event, so conflicted
// members fail their checks and drop out of the state. The ordering and
// checks here are the spec's; where the spec leaves a choice open (the
// auth chain counting the state events themselves, the power events'
// auth-chain walk staying inside the full conflicted set), they follow
// Synapse, the other implementation v12 rooms meet most.

// stateKeyOf is a state event's (type, state_key).
type stateKeyOf struct{ typ, sk string }

func keyOf(e gmsl.PDU) stateKeyOf { return stateKeyOf{e.Type(), *e.StateKey()} }

// resolver21 holds one resolution's events: every event of the state sets
// and of their auth chains, by ID, and the room's create event.
type resolver21 struct {
	byID   map[string]gmsl.PDU
	create gmsl.PDU
	load   func(eventID string) gmsl.PDU // events not at hand, nil if unknown; nil: none
	loads  int                           // events load was asked for
}

func resolveV21(sets [][]gmsl.PDU, auth []gmsl.PDU, load func(eventID string) gmsl.PDU) ([]gmsl.PDU, error) {
	r := &resolver21{byID: make(map[string]gmsl.PDU, len(auth)), load: load}
	for _, e := range auth {
		r.byID[e.EventID()] = e
	}
	for _, set := range sets {
		for _, e := range set {
			r.byID[e.EventID()] = e
		}
	}

	// Unconflicted state map and conflicted state set: a key is
	// unconflicted when every set holds the same event for it.
	type slot struct {
		first  gmsl.PDU
		sets   int        // how many sets hold first
		others []gmsl.PDU // other events for the key
	}
	slots := make(map[stateKeyOf]*slot, len(sets[0]))
	for _, set := range sets {
		for _, e := range set {
			if e.StateKey() == nil {
				continue
			}
			k := keyOf(e)
			switch sl := slots[k]; {
			case sl == nil:
				slots[k] = &slot{first: e, sets: 1}
			case sl.first.EventID() == e.EventID():
				sl.sets++
			default:
				sl.others = append(sl.others, e)
			}
		}
	}
	unconflicted := make(map[stateKeyOf]gmsl.PDU, len(slots))
	conflicted := map[string]bool{}
	for k, sl := range slots {
		if len(sl.others) == 0 && sl.sets == len(sets) {
			unconflicted[k] = sl.first
			continue
		}
		conflicted[sl.first.EventID()] = true
		for _, e := range sl.others {
			conflicted[e.EventID()] = true
		}
	}
	r.create = unconflicted[stateKeyOf{spec.MRoomCreate, ""}]
	if r.create == nil {
		for _, e := range r.byID {
			if e.Type() == spec.MRoomCreate && e.StateKeyEquals("") {
				r.create = e
				break
			}
		}
	}
	if len(conflicted) == 0 {
		out := make([]gmsl.PDU, 0, len(unconflicted))
		for _, e := range unconflicted {
			out = append(out, e)
		}
		return out, nil
	}

	// The full conflicted set: conflicted state, conflicted subgraph and
	// auth difference, of events we have.
	full := r.authDifference(sets, unconflicted, conflicted)
	for id := range r.conflictedSubgraph(conflicted) {
		full[id] = true
	}
	for id := range conflicted {
		full[id] = true
	}
	for id := range full {
		if r.byID[id] == nil {
			delete(full, id)
		}
	}

	// Step 1: the power events and their auth chains within the full
	// conflicted set, in reverse topological power order.
	graph := map[string][]string{}
	for id := range full {
		if isPowerEvent(r.byID[id]) {
			r.addWithAuthChain(graph, id, full)
		}
	}
	powerSorted := r.powerSort(graph)

	// Step 2: iterative auth checks from an empty state map.
	resolved := map[stateKeyOf]gmsl.PDU{}
	r.iterativeAuthChecks(resolved, powerSorted)

	// Steps 3 and 4: the rest by mainline order of the resolved power
	// levels, checked on top of the partial state.
	var rest []gmsl.PDU
	for id := range full {
		if _, ok := graph[id]; !ok {
			rest = append(rest, r.byID[id])
		}
	}
	r.iterativeAuthChecks(resolved, r.mainlineSort(rest, resolved[stateKeyOf{spec.MRoomPowerLevels, ""}]))

	// Step 5: the unconflicted state map wins.
	for k, e := range unconflicted {
		resolved[k] = e
	}
	out := make([]gmsl.PDU, 0, len(resolved))
	for _, e := range resolved {
		out = append(out, e)
	}
	return out, nil
}

// isPowerEvent is the spec's power event (power levels, join rules, a
// kick or ban), and the create event as Synapse counts it.
func isPowerEvent(e gmsl.PDU) bool {
	if e.StateKey() == nil {
		return false
	}
	switch e.Type() {
	case spec.MRoomPowerLevels, spec.MRoomJoinRules, spec.MRoomCreate:
		return *e.StateKey() == ""
	case spec.MRoomMember:
		m, _ := e.Membership()
		return (m == spec.Leave || m == spec.Ban) && string(e.SenderID()) != *e.StateKey()
	}
	return false
}

// authChain adds to into every event reachable from ids through
// auth_events, the starting events included.
func (r *resolver21) authChain(ids []string, into map[string]bool) {
	stack := slices.Clone(ids)
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if into[id] {
			continue
		}
		into[id] = true
		if e := r.byID[id]; e != nil {
			stack = append(stack, e.AuthEventIDs()...)
		}
	}
}

// authDifference is the union of the state sets' full auth chains (their
// events included) less their intersection. Each set's chain is that of
// the unconflicted state, the same for all, and that of the set's own
// conflicted events, so the difference is the union of the latter less
// their intersection, less what the unconflicted state's chain reaches.
// The conflicted events' chains are at hand, and the conflicted events
// are in the full conflicted set anyway; for the other events in
// question, the unconflicted state's chain (a room's every member) is
// walked only until none is left, and only down to the depth of the
// oldest, loading what is not at hand. Auth events come before the events
// that cite them, so a shallower event cannot reach a deeper one (a peer
// lying about depth can only make us replay an event more).
func (r *resolver21) authDifference(sets [][]gmsl.PDU, unconflicted map[stateKeyOf]gmsl.PDU, conflicted map[string]bool) map[string]bool {
	shared := map[string]bool{}
	for _, e := range unconflicted {
		shared[e.EventID()] = true
	}
	chains := make([]map[string]bool, len(sets))
	for i, set := range sets {
		var ids []string
		for _, e := range set {
			if !shared[e.EventID()] {
				ids = append(ids, e.EventID())
			}
		}
		chains[i] = map[string]bool{}
		r.authChain(ids, chains[i])
	}
	diff := map[string]bool{}
	for _, c := range chains {
		for id := range c {
			for _, other := range chains {
				if !other[id] && !shared[id] { // the unconflicted state is in every chain
					diff[id] = true
					break
				}
			}
		}
	}
	// The events still in question, and how deep the walk must go.
	open := 0
	minDepth := int64(math.MaxInt64)
	for id := range diff {
		if e := r.byID[id]; e != nil && !conflicted[id] {
			open++
			minDepth = min(minDepth, e.Depth())
		}
	}
	if open == 0 {
		return diff
	}
	// In a fixed order, so that where the cap on loads cuts the walk
	// short, it cuts it alike each time.
	stack := make([]string, 0, len(shared))
	for id := range shared {
		stack = append(stack, id)
	}
	slices.Sort(stack)
	seen := map[string]bool{}
	for len(stack) > 0 && open > 0 && r.loads < maxLoads {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[id] {
			continue
		}
		seen[id] = true
		e := r.event(id)
		if e == nil || e.Depth() < minDepth {
			continue
		}
		if diff[id] && !conflicted[id] {
			delete(diff, id)
			open--
		}
		stack = append(stack, e.AuthEventIDs()...)
	}
	return diff
}

// maxLoads bounds the events one resolution loads (a few tens of
// microseconds each): a peer could otherwise make every fork cost a walk
// through the whole history of a big room. Past it, what the walk has
// not reached counts as part of the auth difference, and is replayed;
// the walk's order is fixed, so the same sets and events stop it at the
// same place.
const maxLoads = 20000

// event returns the event of id: at hand, or loaded (and kept at hand);
// nil if neither.
func (r *resolver21) event(id string) gmsl.PDU {
	if e, ok := r.byID[id]; ok || r.load == nil {
		return e
	}
	r.loads++
	e := r.load(id)
	if e != nil {
		r.byID[id] = e
	}
	return e
}

// conflictedSubgraph is every event on an auth_events path from one
// conflicted event to another, the ends included.
func (r *resolver21) conflictedSubgraph(conflicted map[string]bool) map[string]bool {
	starts := make([]string, 0, len(conflicted))
	for id := range conflicted {
		starts = append(starts, id)
	}
	reach := map[string]bool{}
	r.authChain(starts, reach)
	// leads[id]: a conflicted event is reachable from id (id included).
	leads := map[string]bool{}
	done := map[string]bool{}
	var visit func(id string) bool
	visit = func(id string) bool {
		if done[id] {
			return leads[id]
		}
		done[id] = true
		hit := conflicted[id]
		if e := r.byID[id]; e != nil {
			for _, a := range e.AuthEventIDs() {
				if visit(a) {
					hit = true
				}
			}
		}
		leads[id] = hit
		return hit
	}
	sub := map[string]bool{}
	for id := range reach {
		if visit(id) {
			sub[id] = true
		}
	}
	return sub
}

// addWithAuthChain adds id to graph with its auth events, following them
// only while they stay in the full conflicted set.
func (r *resolver21) addWithAuthChain(graph map[string][]string, id string, full map[string]bool) {
	stack := []string{id}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := graph[id]; ok {
			continue
		}
		var edges []string
		for _, a := range r.byID[id].AuthEventIDs() {
			if full[a] {
				edges = append(edges, a)
				if _, ok := graph[a]; !ok {
					stack = append(stack, a)
				}
			}
		}
		graph[id] = edges
	}
}

// senderPower is the sender's power level by the event's own auth events;
// the room's creators (v12) rank above every level.
func (r *resolver21) senderPower(e gmsl.PDU) int64 {
	sender := string(e.SenderID())
	if r.create != nil && slices.Contains(gmsl.CreatorsFromCreateEvent(r.create), sender) {
		return math.MaxInt64
	}
	for _, id := range e.AuthEventIDs() {
		a := r.byID[id]
		if a == nil || a.Type() != spec.MRoomPowerLevels || !a.StateKeyEquals("") {
			continue
		}
		pl, err := gmsl.NewPowerLevelContentFromEvent(a)
		if err != nil {
			return 0
		}
		return pl.UserLevel(e.SenderID())
	}
	return 0
}

// powerSort orders graph's events (each with its auth events among them)
// earliest first by Kahn's algorithm, taking at each step the candidate
// whose sender has the most power, then the oldest, then the smallest ID.
func (r *resolver21) powerSort(graph map[string][]string) []gmsl.PDU {
	power := make(map[string]int64, len(graph))
	pending := make(map[string]int, len(graph))
	citedBy := map[string][]string{}
	q := &eventHeap{less: func(a, b gmsl.PDU) bool {
		if pa, pb := power[a.EventID()], power[b.EventID()]; pa != pb {
			return pa > pb
		}
		return tsThenID(a, b) < 0
	}}
	for id, edges := range graph {
		power[id] = r.senderPower(r.byID[id])
		pending[id] = len(edges)
		for _, a := range edges {
			citedBy[a] = append(citedBy[a], id)
		}
	}
	for id, n := range pending {
		if n == 0 {
			q.items = append(q.items, r.byID[id])
		}
	}
	heap.Init(q)
	out := make([]gmsl.PDU, 0, len(graph))
	for q.Len() > 0 {
		e := heap.Pop(q).(gmsl.PDU)
		out = append(out, e)
		for _, c := range citedBy[e.EventID()] {
			if pending[c]--; pending[c] == 0 {
				heap.Push(q, r.byID[c])
			}
		}
	}
	return out
}

func tsThenID(a, b gmsl.PDU) int {
	if c := cmp.Compare(a.OriginServerTS(), b.OriginServerTS()); c != 0 {
		return c
	}
	return cmp.Compare(a.EventID(), b.EventID())
}

// powerLevelsCited is the power levels event among e's auth events.
func (r *resolver21) powerLevelsCited(e gmsl.PDU) gmsl.PDU {
	for _, id := range e.AuthEventIDs() {
		if a := r.byID[id]; a != nil && a.Type() == spec.MRoomPowerLevels && a.StateKeyEquals("") {
			return a
		}
	}
	return nil
}

// mainlineSort orders events by their position on the mainline of pl
// (those based on older power levels first, those on none before all),
// then oldest first, then by event ID.
func (r *resolver21) mainlineSort(events []gmsl.PDU, pl gmsl.PDU) []gmsl.PDU {
	var mainline []string
	for p := pl; p != nil; p = r.powerLevelsCited(p) {
		mainline = append(mainline, p.EventID())
	}
	// depth: 1 for the oldest power levels on the mainline, rising to the
	// resolved one; 0 for an event based on none of them.
	depthOf := make(map[string]int, len(mainline))
	for i, id := range mainline {
		depthOf[id] = len(mainline) - i
	}
	depth := make(map[string]int, len(events))
	for _, e := range events {
		for p := r.powerLevelsCited(e); p != nil; p = r.powerLevelsCited(p) {
			if d, ok := depthOf[p.EventID()]; ok {
				depth[e.EventID()] = d
				break
			}
		}
	}
	slices.SortFunc(events, func(a, b gmsl.PDU) int {
		if c := cmp.Compare(depth[a.EventID()], depth[b.EventID()]); c != 0 {
			return c
		}
		return tsThenID(a, b)
	})
	return events
}

// iterativeAuthChecks applies each event to state when the auth rules
// allow it against that state, taking what the state lacks from the
// event's own auth events.
func (r *resolver21) iterativeAuthChecks(state map[stateKeyOf]gmsl.PDU, events []gmsl.PDU) {
	for _, e := range events {
		if e.StateKey() == nil {
			continue
		}
		authState := map[stateKeyOf]gmsl.PDU{}
		for _, id := range e.AuthEventIDs() {
			if a := r.byID[id]; a != nil && a.StateKey() != nil {
				authState[keyOf(a)] = a
			}
		}
		for _, t := range gmsl.StateNeededForAuth([]gmsl.PDU{e}).Tuples() {
			if s := state[stateKeyOf{t.EventType, t.StateKey}]; s != nil {
				authState[stateKeyOf{t.EventType, t.StateKey}] = s
			}
		}
		// The room ID names the create event (v12): it is never a choice.
		if r.create != nil {
			authState[stateKeyOf{spec.MRoomCreate, ""}] = r.create
		}
		pdus := make([]gmsl.PDU, 0, len(authState))
		for _, a := range authState {
			pdus = append(pdus, a)
		}
		provider, err := gmsl.NewAuthEvents(pdus)
		if err != nil {
			continue
		}
		if allowed(&Event{p: e}, provider) == nil {
			state[keyOf(e)] = e
		}
	}
}

// eventHeap is a min-heap of events under less.
type eventHeap struct {
	items []gmsl.PDU
	less  func(a, b gmsl.PDU) bool
}

func (h *eventHeap) Len() int           { return len(h.items) }
func (h *eventHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *eventHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *eventHeap) Push(x any)         { h.items = append(h.items, x.(gmsl.PDU)) }
func (h *eventHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
