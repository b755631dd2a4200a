package federation_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/server/pdu"
	"hearth/server/servertest"
)

// A transaction carrying several rooms' PDUs, interleaved: B takes the
// rooms in at once (Synapse's way) but each room's in the order sent,
// every one accepted, and each room's timeline on B reads them in order.
func TestTransactionOfSeveralRooms(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := c.Register(t, "carol", "pw-carol")
	var roomIDs []string
	var chains []*chainForger
	for range 3 {
		roomID := roomOfThree(t, a, alice, bob, carol)
		roomIDs, chains = append(roomIDs, roomID), append(chains, newChainForger(t, b, c, roomID))
	}
	var pdus []json.RawMessage
	for i := range 30 {
		pdus = append(pdus, chains[i%3].next(carol.UserID, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("m%02d", i)}))
	}
	results, err := sendTxn(t, c, b, pdus...)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 30 {
		t.Fatalf("%d results for 30 PDUs: %v", len(results), results)
	}
	for id, r := range results {
		if r["error"] != "" {
			t.Fatalf("PDU %s refused: %v", id, r)
		}
	}
	for k, roomID := range roomIDs {
		r := bob.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=10", nil)
		var got, want []string
		for _, e := range r.JSON["chunk"].([]any) {
			if body, ok := e.(map[string]any)["content"].(map[string]any)["body"].(string); ok {
				got = append(got, body)
			}
		}
		for i := 27 + k; i >= 0; i -= 3 {
			want = append(want, fmt.Sprintf("m%02d", i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("room %d on B, newest first: %v, want %v", k, got, want)
		}
	}
}

// One room's PDUs in one transaction, mixing what B can take at once with
// what it cannot: a message, one by a user not in the room (rejected),
// one following the rejected event, one whose prev event nobody can give
// B, and one more. B stores the ready ones together and the others as it
// would alone: each PDU's answer, and the timeline, are what taking them
// one at a time gives.
func TestTransactionMixesReadyAndMissing(t *testing.T) {
	srv := servertest.Federation(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	alice := a.Register(t, "alice", "pw-alice")
	bob := b.Register(t, "bob", "pw-bob")
	carol := c.Register(t, "carol", "pw-carol")
	roomID := roomOfThree(t, a, alice, bob, carol)
	f := newChainForger(t, b, c, roomID)
	msg := func(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }
	one := f.next(carol.UserID, msg("one"))
	rejected := f.next("@eve:"+c.ServerName(), msg("eve was never here"))
	three := f.next(carol.UserID, msg("three"))
	afterThree := slices.Clone(f.head.prev)
	f.next(carol.UserID, msg("never sent")) // nobody has it
	four := f.next(carol.UserID, msg("four"))
	f.head.prev = afterThree
	five := f.next(carol.UserID, msg("five"))

	results, err := sendTxn(t, c, b, one, rejected, three, four, five)
	if err != nil {
		t.Fatal(err)
	}
	idOf := func(js json.RawMessage) string {
		ev, err := pdu.Parse("12", js, false)
		if err != nil {
			t.Fatal(err)
		}
		return ev.ID()
	}
	for name, want := range map[string]struct {
		js    json.RawMessage
		error bool
	}{"one": {one, false}, "rejected": {rejected, false}, "three": {three, false}, "four": {four, true}, "five": {five, false}} {
		r, ok := results[idOf(want.js)]
		if !ok || (r["error"] != "") != want.error {
			t.Errorf("PDU %q answered %v (present %v), want an error: %v", name, r, ok, want.error)
		}
	}
	r := bob.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=5", nil)
	var got []string
	for _, e := range r.JSON["chunk"].([]any) {
		if body, ok := e.(map[string]any)["content"].(map[string]any)["body"].(string); ok {
			got = append(got, body)
		}
	}
	if want := []string{"five", "three", "one"}; !slices.Equal(got, want) {
		t.Errorf("B's timeline, newest first: %v, want %v", got, want)
	}
}
