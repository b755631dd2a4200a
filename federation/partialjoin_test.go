package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"hearth/federation"
	"hearth/server/pdu"
	"hearth/server/servertest"
	"hearth/store"
)

// sendJoin has the listener's userID join a room through via by make_join
// and send_join, query appended to send_join's path, and returns the
// join as sent and send_join's answer.
func (l *listener) sendJoin(t *testing.T, via *servertest.Server, roomID, userID, query string) (*pdu.Event, *sendJoinAnswer, error) {
	t.Helper()
	ctx := context.Background()
	var made struct {
		RoomVersion string          `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	q := url.Values{"ver": pdu.SupportedVersions()}
	uri := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?" + q.Encode()
	if err := l.client.Call(ctx, "GET", via.ServerName(), uri, nil, &made); err != nil {
		t.Fatalf("make_join: %v", err)
	}
	ev, err := pdu.BuildFromTemplate(made.RoomVersion, made.Event, l.signer, time.Now())
	if err != nil {
		t.Fatalf("complete the join: %v", err)
	}
	var resp sendJoinAnswer
	uri = "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(ev.ID()) + query
	err = l.client.Call(ctx, "PUT", via.ServerName(), uri, json.RawMessage(ev.JSON()), &resp)
	return ev, &resp, err
}

// sendJoinAnswer is send_join's answer, and the state response
// gomatrixserverlib checks.
type sendJoinAnswer struct {
	StateEvents    gmsl.EventJSONs `json:"state"`
	AuthEvents     gmsl.EventJSONs `json:"auth_chain"`
	Origin         string          `json:"origin"`
	Event          json.RawMessage `json:"event"`
	MembersOmitted bool            `json:"members_omitted"`
	ServersInRoom  []string        `json:"servers_in_room"`
}

func (r *sendJoinAnswer) GetStateEvents() gmsl.EventJSONs { return r.StateEvents }
func (r *sendJoinAnswer) GetAuthEvents() gmsl.EventJSONs  { return r.AuthEvents }

// serverKeys verifies event signatures for gomatrixserverlib with the
// signing keys of the servers given, as a joining server would once it
// has fetched them.
type serverKeys map[spec.ServerName]map[gmsl.KeyID]ed25519.PublicKey

func keysOf(t *testing.T, l *listener, servers ...*servertest.Server) serverKeys {
	t.Helper()
	keys := serverKeys{spec.ServerName(l.name): {gmsl.KeyID(l.signer.KeyID): l.signer.Key.Public().(ed25519.PublicKey)}}
	for _, s := range servers {
		err := s.Store().View(func(tx *store.Tx) error {
			k, err := tx.SigningKey()
			if err != nil {
				return err
			}
			keys[spec.ServerName(s.ServerName())] = map[gmsl.KeyID]ed25519.PublicKey{
				gmsl.KeyID(k.ID): ed25519.NewKeyFromSeed(k.Seed).Public().(ed25519.PublicKey)}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func (k serverKeys) VerifyJSONs(_ context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		out[i].Error = fmt.Errorf("no valid signature of %s", r.ServerName)
		for id, pub := range k[r.ServerName] {
			if gmsl.VerifyJSON(string(r.ServerName), id, pub, r.Message) == nil {
				out[i].Error = nil
			}
		}
	}
	return out, nil
}

// checkJoinable checks a send_join answer as the joining server would
// take it in: with gomatrixserverlib, every event signed, every state and
// auth chain event allowed by its auth events, none of which is missing,
// and the join allowed by the state.
func checkJoinable(t *testing.T, keys serverKeys, version string, join *pdu.Event, resp *sendJoinAnswer) {
	t.Helper()
	impl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(version))
	joinPDU, err := impl.NewEventFromTrustedJSON(join.JSON(), false)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	missingAuth := func(_ gmsl.RoomVersion, ids []string) ([]gmsl.PDU, error) {
		missing = append(missing, ids...)
		return nil, errors.New("not in the answer")
	}
	sender := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	checked, err := gmsl.CheckSendJoinResponse(context.Background(), impl.Version(), resp, keys, joinPDU, missingAuth, sender)
	if err != nil {
		t.Fatalf("the joining server refuses the answer: %v", err)
	}
	if len(missing) > 0 {
		t.Errorf("auth events missing from state and auth_chain: %v", missing)
	}
	if a, s := len(checked.GetAuthEvents()), len(checked.GetStateEvents()); a != len(resp.AuthEvents) || s != len(resp.StateEvents) {
		t.Errorf("the joining server drops events that fail their signature or auth checks: kept %d of %d in auth_chain, %d of %d in state",
			a, len(resp.AuthEvents), s, len(resp.StateEvents))
	}
}

// answerEvents parses the state and auth chain of a send_join answer.
func answerEvents(t *testing.T, version string, resp *sendJoinAnswer) (state, chain []*pdu.Event) {
	t.Helper()
	parse := func(js []spec.RawJSON) []*pdu.Event {
		var out []*pdu.Event
		for _, raw := range js {
			ev, err := pdu.Parse(version, raw, false)
			if err != nil {
				t.Fatalf("an event of the answer: %v", err)
			}
			out = append(out, ev)
		}
		return out
	}
	return parse(resp.StateEvents), parse(resp.AuthEvents)
}

// memberKeys returns the state keys of the member events among evs, sorted.
func memberKeys(evs []*pdu.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type() == "m.room.member" {
			out = append(out, *ev.StateKey())
		}
	}
	slices.Sort(out)
	return out
}

// nonMemberState returns the types and state keys of a room's state on a
// server other than member events, as a client of it reads them.
func nonMemberState(t *testing.T, c *servertest.Client, roomID string) []string {
	t.Helper()
	r := c.Must(200, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state", nil)
	var evs []struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
	}
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Type != "m.room.member" {
			out = append(out, e.Type+"|"+e.StateKey)
		}
	}
	slices.Sort(out)
	return out
}

func stateTuples(evs []*pdu.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type() != "m.room.member" {
			out = append(out, ev.Type()+"|"+*ev.StateKey())
		}
	}
	slices.Sort(out)
	return out
}

// Partial-state ("faster") joins, server side: a server joining through
// A with omit_members=true is sent the room's state without the member
// events (but its user's own earlier one, and, in a room without name or
// alias, the heroes' its user would be shown), members_omitted, every
// server in the room before the join, and an auth chain with which
// gomatrixserverlib, as the joiner, authorises every event it is sent.
// Without the flag it is sent the full state as before.
func TestPartialStateSendJoin(t *testing.T) {
	ca := servertest.NewCA(t)
	a, c := ca.Start(t, servertest.Options{}), ca.Start(t, servertest.Options{})
	l := startListener(t, ca)
	keys := keysOf(t, l, a, c)
	alice := a.Register(t, "alice", "pw-alice")
	var locals []*servertest.Client
	for i := range 8 {
		locals = append(locals, a.Register(t, fmt.Sprintf("a%d", i), "pw-a"))
	}
	var remotes []*servertest.Client
	for i := range 2 {
		remotes = append(remotes, c.Register(t, fmt.Sprintf("c%d", i), "pw-c"))
	}
	join := func(u *servertest.Client, roomID string) {
		t.Helper()
		u.Must(200, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName()), map[string]any{})
	}
	inRoom := []string{a.ServerName(), c.ServerName()}
	slices.Sort(inRoom)

	// A named room whose topic a member of C set, so the topic's auth
	// events include a member event the state leaves out.
	hall := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Hall"})
	hallPath := "/_matrix/client/v3/rooms/" + url.PathEscape(hall)
	for _, u := range append(slices.Clone(locals), remotes...) {
		join(u, hall)
	}
	pl := alice.Must(200, "GET", hallPath+"/state/m.room.power_levels/", nil).JSON
	pl["users"].(map[string]any)[remotes[0].UserID] = 100
	alice.Must(200, "PUT", hallPath+"/state/m.room.power_levels/", pl)
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := remotes[0].Do("PUT", hallPath+"/state/m.room.topic/", map[string]any{"topic": "set from C"})
		return r.Status == 200, "c0 setting the topic: " + r.String()
	})
	servertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r := alice.Do("GET", hallPath+"/state/m.room.topic/", nil)
		return r.Str("topic") == "set from C", "the topic on A: " + r.String()
	})
	version := alice.Must(200, "GET", hallPath+"/state/m.room.create/", nil).Str("room_version")

	lena := "@lena:" + l.name
	t.Run("omit_members in a named room", func(t *testing.T) {
		want := nonMemberState(t, alice, hall)
		ev, resp, err := l.sendJoin(t, a, hall, lena, "?omit_members=true")
		if err != nil {
			t.Fatalf("send_join: %v", err)
		}
		if !resp.MembersOmitted {
			t.Error("members_omitted is not true")
		}
		if !slices.Equal(resp.ServersInRoom, inRoom) {
			t.Errorf("servers_in_room = %v, want %v", resp.ServersInRoom, inRoom)
		}
		state, chain := answerEvents(t, version, resp)
		if m := memberKeys(state); len(m) != 0 {
			t.Errorf("the state has member events of %v", m)
		}
		if got := stateTuples(state); !slices.Equal(got, want) {
			t.Errorf("the state is %v, want every other state event: %v", got, want)
		}
		inState := map[string]bool{}
		for _, e := range state {
			inState[e.ID()] = true
		}
		for _, e := range chain {
			if inState[e.ID()] {
				t.Errorf("auth_chain repeats %s (%s) of the state", e.ID(), e.Type())
			}
		}
		if !slices.Contains(memberKeys(chain), remotes[0].UserID) {
			t.Errorf("auth_chain lacks c0's member event, an auth event of the topic: %v", memberKeys(chain))
		}
		checkJoinable(t, keys, version, ev, resp)
	})

	t.Run("full state without omit_members", func(t *testing.T) {
		ev, resp, err := l.sendJoin(t, a, hall, "@max:"+l.name, "")
		if err != nil {
			t.Fatalf("send_join: %v", err)
		}
		if resp.MembersOmitted {
			t.Error("members_omitted is true")
		}
		want := []string{alice.UserID, lena}
		for _, u := range append(slices.Clone(locals), remotes...) {
			want = append(want, u.UserID)
		}
		slices.Sort(want)
		state, _ := answerEvents(t, version, resp)
		if got := memberKeys(state); !slices.Equal(got, want) {
			t.Errorf("the state has member events of %v, want %v", got, want)
		}
		servers := append(slices.Clone(inRoom), l.name)
		slices.Sort(servers)
		if !slices.Equal(resp.ServersInRoom, servers) {
			t.Errorf("servers_in_room = %v, want %v", resp.ServersInRoom, servers)
		}
		checkJoinable(t, keys, version, ev, resp)
	})

	t.Run("the joiner's own earlier membership is kept", func(t *testing.T) {
		alice.Must(200, "POST", hallPath+"/kick", map[string]any{"user_id": lena})
		ev, resp, err := l.sendJoin(t, a, hall, lena, "?omit_members=true")
		if err != nil {
			t.Fatalf("send_join: %v", err)
		}
		state, _ := answerEvents(t, version, resp)
		if got := memberKeys(state); !slices.Equal(got, []string{lena}) {
			t.Errorf("the state has member events of %v, want lena's kick only", got)
		}
		checkJoinable(t, keys, version, ev, resp)
	})

	t.Run("a bad omit_members", func(t *testing.T) {
		ned := "@ned:" + l.name
		_, _, err := l.sendJoin(t, a, hall, ned, "?omit_members=yes")
		var fe *federation.Error
		if !errors.As(err, &fe) || fe.Status != 400 || fe.Code != "M_INVALID_PARAM" {
			t.Fatalf("send_join with omit_members=yes: %v, want 400 M_INVALID_PARAM", err)
		}
		if r := alice.Do("GET", hallPath+"/state/m.room.member/"+url.PathEscape(ned), nil); r.Status != 404 {
			t.Errorf("the refused join is in the room: %s", r)
		}
	})

	t.Run("omit_members in a restricted join", func(t *testing.T) {
		// The join's authoriser is in the state, so the joiner can check
		// the join against the state it is sent.
		space := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Space"})
		inner := createRestrictedRoom(t, alice, space, map[string]any{"preset": "public_chat", "name": "Inner"})
		omar := "@omar:" + l.name
		l.join(t, a, space, omar)
		ev, resp, err := l.sendJoin(t, a, inner, omar, "?omit_members=true")
		if err != nil {
			t.Fatalf("send_join: %v", err)
		}
		var c struct {
			Via string `json:"join_authorised_via_users_server"`
		}
		if json.Unmarshal(ev.Content(), &c); c.Via != alice.UserID {
			t.Fatalf("the join is authorised by %q, want alice", c.Via)
		}
		state, _ := answerEvents(t, "10", resp)
		if got := memberKeys(state); !slices.Equal(got, []string{alice.UserID}) {
			t.Errorf("the state has member events of %v, want the authoriser's", got)
		}
		signed, err := pdu.Parse("10", resp.Event, false)
		if err != nil {
			t.Fatalf("the countersigned join: %v", err)
		}
		checkJoinable(t, keys, "10", signed, resp)
	})

	t.Run("omit_members in a room named after its heroes", func(t *testing.T) {
		den := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		denPath := "/_matrix/client/v3/rooms/" + url.PathEscape(den)
		join(locals[0], den)
		join(locals[1], den)
		alice.Must(200, "POST", denPath+"/invite", map[string]any{"user_id": locals[7].UserID})
		for _, u := range locals[2:5] {
			join(u, den)
		}
		join(remotes[0], den)
		locals[0].Must(200, "POST", denPath+"/leave", map[string]any{})
		// By stream order: alice, a1, a7 (invited), a2, a3, a4, c0, and a0
		// who left.
		ev, resp, err := l.sendJoin(t, a, den, lena, "?omit_members=true")
		if err != nil {
			t.Fatalf("send_join: %v", err)
		}
		if !resp.MembersOmitted {
			t.Error("members_omitted is not true")
		}
		if !slices.Equal(resp.ServersInRoom, inRoom) {
			t.Errorf("servers_in_room = %v, want %v", resp.ServersInRoom, inRoom)
		}
		heroes := []string{alice.UserID, locals[1].UserID, locals[7].UserID, locals[2].UserID, locals[3].UserID}
		slices.Sort(heroes)
		state, _ := answerEvents(t, version, resp)
		if got := memberKeys(state); !slices.Equal(got, heroes) {
			t.Errorf("the state has member events of %v, want the heroes' %v", got, heroes)
		}
		checkJoinable(t, keys, version, ev, resp)
	})
}

// Client side: Hearth joining a room elsewhere asks for the whole state
// (no omit_members=true), and a resident server that leaves member
// events out all the same is not taken at its word: the join fails
// rather than leave the room with members missing.
func TestJoinRefusesUnaskedPartialState(t *testing.T) {
	ca := servertest.NewCA(t)
	a := ca.Start(t, servertest.Options{})
	l := startListener(t, ca)
	const version = "10"
	roomID := "!stand-in:" + l.name
	host := "@host:" + l.name
	var state []*pdu.Event
	add := func(typ, stateKey string, content map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(content)
		p := &pdu.Proto{Version: version, RoomID: roomID, Sender: host, Type: typ, StateKey: &stateKey, Content: raw, Depth: int64(len(state) + 1)}
		if len(state) > 0 {
			p.PrevEvents = []string{state[len(state)-1].ID()}
		}
		ev, err := pdu.Build(p, state, l.signer, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		state = append(state, ev)
	}
	add("m.room.create", "", map[string]any{"creator": host, "room_version": version})
	add("m.room.member", host, map[string]any{"membership": "join"})
	add("m.room.power_levels", "", map[string]any{"users": map[string]any{host: 100}})
	add("m.room.join_rules", "", map[string]any{"join_rule": "public"})

	queries := make(chan url.Values, 1)
	l.mux.HandleFunc("GET /_matrix/federation/v1/make_join/{roomId}/{userId}", func(w http.ResponseWriter, r *http.Request) {
		content, _ := json.Marshal(map[string]any{"membership": "join"})
		user := r.PathValue("userId")
		p := &pdu.Proto{Version: version, RoomID: roomID, Sender: user, Type: "m.room.member", StateKey: &user, Content: content,
			PrevEvents: []string{state[len(state)-1].ID()}, Depth: int64(len(state) + 1)}
		ev, err := pdu.Build(p, state, l.signer, time.Now())
		if err != nil {
			t.Error(err)
			return
		}
		tmpl, _ := pdu.Template(ev)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"room_version": version, "event": tmpl})
	})
	l.mux.HandleFunc("PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.Query()
		var evs []json.RawMessage
		for _, ev := range state {
			evs = append(evs, ev.JSON())
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"origin": l.name, "state": evs, "auth_chain": []any{},
			"members_omitted": true, "servers_in_room": []string{l.name}})
	})

	alice := a.Register(t, "alice", "pw-alice")
	r := alice.Do("POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(l.name), map[string]any{})
	var q url.Values
	select { // the join answers after its send_join
	case q = <-queries:
	default:
		t.Fatalf("the join never reached send_join: %s", r)
	}
	if v, ok := q["omit_members"]; ok && !slices.Equal(v, []string{"false"}) {
		t.Errorf("send_join asked for omit_members=%v", v)
	}
	if r.Status == 200 {
		t.Fatalf("alice joined a room whose state came without its members: %s", r)
	}
	if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state", nil); r.Status == 200 {
		t.Errorf("the room's state is readable after the failed join: %s", r)
	}
}
