package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"hearth/federation"
	"hearth/server/servertest"
)

// histEvent is what these tests read of a PDU.
type histEvent struct {
	Type     string         `json:"type"`
	StateKey *string        `json:"state_key"`
	Depth    int64          `json:"depth"`
	Content  map[string]any `json:"content"`
}

func decodeEvents(t *testing.T, raws []json.RawMessage) []histEvent {
	t.Helper()
	out := make([]histEvent, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatalf("PDU %d: %v: %s", i, err, raw)
		}
	}
	return out
}

func histTypes(evs []histEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func histBodies(evs []histEvent) []string {
	var out []string
	for _, e := range evs {
		if b, ok := e.Content["body"].(string); ok {
			out = append(out, b)
		}
	}
	return out
}

func sendText(c *servertest.Client, roomID, body string) string {
	return c.Must(200, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", url.PathEscape(roomID), servertest.UniqueName("txn")),
		map[string]any{"msgtype": "m.text", "body": body}).Str("event_id")
}

func historyVisibility(v string) map[string]any {
	return map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": v}}
}

// TestFederationReadsRefused: a server with no member in a room reads
// nothing of its history unless it is world_readable, and what we do not
// have is 404, over real HTTPS with B's signed requests to A.
func TestFederationReadsRefused(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	aName := a.ServerName()
	alice := a.Register(t, "alice", "password-alice")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}).Str("room_id")
	eventID := sendText(alice, roomID, "private")
	otherRoom := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}).Str("room_id")
	unknownRoom := "!nowhere:" + aName

	fed := b.Federation()
	ctx := context.Background()
	call := func(method, uri string, in any) error {
		return fed.Client().Call(ctx, method, aName, uri, in, nil)
	}
	missing := func(room string) error {
		_, err := fed.MissingEvents(ctx, aName, room, nil, []string{eventID}, 10)
		return err
	}
	cases := []struct {
		name   string
		do     func() error
		status int
		code   string
	}{
		{"event of a room B is not in", func() error { _, err := fed.Event(ctx, aName, eventID); return err }, 403, "M_FORBIDDEN"},
		{"state in a room B is not in", func() error { _, _, err := fed.State(ctx, aName, roomID, eventID); return err }, 403, "M_FORBIDDEN"},
		{"state_ids in a room B is not in", func() error {
			return call("GET", "/_matrix/federation/v1/state_ids/"+url.PathEscape(roomID)+"?event_id="+url.QueryEscape(eventID), nil)
		}, 403, "M_FORBIDDEN"},
		{"event_auth in a room B is not in", func() error { _, err := fed.EventAuth(ctx, aName, roomID, eventID); return err }, 403, "M_FORBIDDEN"},
		{"backfill in a room B is not in", func() error {
			return call("GET", "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID)+"?v="+url.QueryEscape(eventID)+"&limit=10", nil)
		}, 403, "M_FORBIDDEN"},
		{"get_missing_events in a room B is not in", func() error { return missing(roomID) }, 403, "M_FORBIDDEN"},

		{"unknown event", func() error { _, err := fed.Event(ctx, aName, "$unknown"); return err }, 404, "M_NOT_FOUND"},
		{"state in an unknown room", func() error { _, _, err := fed.State(ctx, aName, unknownRoom, eventID); return err }, 404, "M_NOT_FOUND"},
		{"state at an unknown event", func() error { _, _, err := fed.State(ctx, aName, roomID, "$unknown"); return err }, 404, "M_NOT_FOUND"},
		{"state at an event of another room", func() error { _, _, err := fed.State(ctx, aName, otherRoom, eventID); return err }, 404, "M_NOT_FOUND"},
		{"event_auth in an unknown room", func() error { _, err := fed.EventAuth(ctx, aName, unknownRoom, eventID); return err }, 404, "M_NOT_FOUND"},
		{"event_auth of an unknown event", func() error { _, err := fed.EventAuth(ctx, aName, roomID, "$unknown"); return err }, 404, "M_NOT_FOUND"},
		{"backfill in an unknown room", func() error {
			return call("GET", "/_matrix/federation/v1/backfill/"+url.PathEscape(unknownRoom)+"?v="+url.QueryEscape(eventID)+"&limit=10", nil)
		}, 404, "M_NOT_FOUND"},
		{"get_missing_events in an unknown room", func() error { return missing(unknownRoom) }, 404, "M_NOT_FOUND"},

		{"state without event_id", func() error { return call("GET", "/_matrix/federation/v1/state/"+url.PathEscape(roomID), nil) }, 400, "M_MISSING_PARAM"},
		{"backfill without limit", func() error {
			return call("GET", "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID)+"?v="+url.QueryEscape(eventID), nil)
		}, 400, "M_MISSING_PARAM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var fe *federation.Error
			if !errors.As(err, &fe) || fe.Status != tc.status || fe.Code != tc.code {
				t.Fatalf("got %v, want HTTP %d %s", err, tc.status, tc.code)
			}
		})
	}
}

// TestFederationReadsWorldReadable: the history of a world_readable room
// is readable by any server, through each endpoint's client; what was
// not world_readable when it happened comes redacted in a history walk
// and is refused alone.
func TestFederationReadsWorldReadable(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, b := srv[0], srv[1]
	aName := a.ServerName()
	alice := a.Register(t, "alice", "password-alice")
	roomID := alice.Must(200, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"preset": "private_chat", "initial_state": []any{historyVisibility("joined")},
	}).Str("room_id")
	secretID := sendText(alice, roomID, "secret")
	alice.Must(200, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.history_visibility",
		historyVisibility("world_readable")["content"])
	public1 := sendText(alice, roomID, "public 1")
	public2 := sendText(alice, roomID, "public 2")

	fed := b.Federation()
	ctx := context.Background()

	raw, err := fed.Event(ctx, aName, public1)
	if err != nil {
		t.Fatalf("event: %v", err)
	}
	if got := histBodies(decodeEvents(t, []json.RawMessage{raw})); !slices.Equal(got, []string{"public 1"}) {
		t.Errorf("event: bodies %q, want [public 1]", got)
	}
	if _, err := fed.Event(ctx, aName, secretID); !federation.IsStatus(err, 403) {
		t.Errorf("event from before world_readable: got %v, want 403", err)
	}

	state, chain, err := fed.State(ctx, aName, roomID, public2)
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	st := decodeEvents(t, state)
	for _, want := range []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"} {
		if !slices.Contains(histTypes(st), want) {
			t.Errorf("state before public 2: types %q, no %s", histTypes(st), want)
		}
	}
	for _, e := range st {
		if e.Type == "m.room.history_visibility" && e.Content["history_visibility"] != "world_readable" {
			t.Errorf("state before public 2: history visibility %v", e.Content)
		}
		if e.Type == "m.room.message" {
			t.Errorf("state holds a message: %v", e)
		}
	}
	if !slices.Contains(histTypes(decodeEvents(t, chain)), "m.room.create") {
		t.Errorf("state: auth chain %q has no create event", histTypes(decodeEvents(t, chain)))
	}

	var ids struct {
		AuthChainIDs []string `json:"auth_chain_ids"`
		PDUIDs       []string `json:"pdu_ids"`
	}
	uri := "/_matrix/federation/v1/state_ids/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape(public2)
	if err := fed.Client().Call(ctx, "GET", aName, uri, nil, &ids); err != nil {
		t.Fatalf("state_ids: %v", err)
	}
	if len(ids.PDUIDs) != len(state) || len(ids.AuthChainIDs) != len(chain) {
		t.Errorf("state_ids: %d and %d IDs, want %d and %d as /state", len(ids.PDUIDs), len(ids.AuthChainIDs), len(state), len(chain))
	}

	auth, err := fed.EventAuth(ctx, aName, roomID, public1)
	if err != nil {
		t.Fatalf("event_auth: %v", err)
	}
	if got := histTypes(decodeEvents(t, auth)); !slices.Contains(got, "m.room.create") || !slices.Contains(got, "m.room.power_levels") || slices.Contains(got, "m.room.message") {
		t.Errorf("event_auth of a message: types %q", got)
	}

	// get_missing_events walks back from public 2 to the world_readable
	// switch and beyond, oldest first; older events come redacted.
	missing, err := fed.MissingEvents(ctx, aName, roomID, nil, []string{public2}, 4)
	if err != nil {
		t.Fatalf("get_missing_events: %v", err)
	}
	me := decodeEvents(t, missing)
	if got := histTypes(me); len(got) != 4 || !slices.Equal(got[1:], []string{"m.room.message", "m.room.history_visibility", "m.room.message"}) {
		t.Fatalf("get_missing_events: types %q, want [... secret, world_readable, public 1]", got)
	}
	if len(me[1].Content) != 0 {
		t.Errorf("get_missing_events: the secret message %v, want it redacted", me[1])
	}
	if got := histBodies(me); !slices.Equal(got, []string{"public 1"}) {
		t.Errorf("get_missing_events: bodies %q, want only [public 1] (secret redacted)", got)
	}
	if !slices.IsSortedFunc(me, func(x, y histEvent) int { return int(x.Depth - y.Depth) }) {
		t.Errorf("get_missing_events: not oldest first: %v", me)
	}
	stopped, err := fed.MissingEvents(ctx, aName, roomID, []string{public1}, []string{public2}, 10)
	if err != nil || len(stopped) != 0 {
		t.Errorf("get_missing_events stopping at public 1: %d events, %v; want none", len(stopped), err)
	}

	var bf struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	uri = "/_matrix/federation/v1/backfill/" + url.PathEscape(roomID) + "?v=" + url.QueryEscape(public2) + "&limit=4"
	if err := fed.Client().Call(ctx, "GET", aName, uri, nil, &bf); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	be := decodeEvents(t, bf.PDUs)
	if bf.Origin != aName || len(be) != 4 {
		t.Fatalf("backfill: origin %q, %d PDUs, want %s and 4", bf.Origin, len(be), aName)
	}
	if got := histBodies(be); !slices.Equal(got, []string{"public 2", "public 1"}) {
		t.Errorf("backfill: bodies %q, want [public 2 public 1]", got)
	}
	if be[3].Type != "m.room.message" || len(be[3].Content) != 0 {
		t.Errorf("backfill: the secret message %v, want it redacted", be[3])
	}
	if !slices.IsSortedFunc(be, func(x, y histEvent) int { return int(y.Depth - x.Depth) }) {
		t.Errorf("backfill: not newest first: %v", be)
	}
	// v may repeat, as Synapse sends it.
	uri = "/_matrix/federation/v1/backfill/" + url.PathEscape(roomID) + "?v=" + url.QueryEscape(public1) + "&v=" + url.QueryEscape(public2) + "&limit=2"
	if err := fed.Client().Call(ctx, "GET", aName, uri, nil, &bf); err != nil {
		t.Fatalf("backfill from two events: %v", err)
	}
	if got := histBodies(decodeEvents(t, bf.PDUs)); len(bf.PDUs) != 2 || !slices.Equal(got, []string{"public 2", "public 1"}) {
		t.Errorf("backfill from two events: %d PDUs, bodies %q; want [public 2 public 1]", len(bf.PDUs), got)
	}
}
