package processtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"hearth/server/servertest"
	"hearth/store"
)

// TestSIGKILLLosesNoAcknowledgedEvent kills the server outright while 4
// rooms with 4 senders each are sending. A 200 promises the sender its
// event is durable; after a restart every promised event must be
// fetchable and in /messages exactly once, a client retrying what was in
// flight (same transaction ID) must get one event, not two, each room must
// still be a single chain, and its membership state must agree with
// joined_members.
func TestSIGKILLLosesNoAcknowledgedEvent(t *testing.T) {
	const (
		nRooms    = 4
		perRoom   = 4   // senders, each its own user
		killAfter = 300 // acknowledged sends before the kill
	)
	dir := t.TempDir()
	srv := serve(t, dir, "--open-registration", "--no-rate-limit")

	type sender struct {
		c      *client
		userID string
		room   int
	}
	var roomIDs []string
	var senders []*sender
	members := make([][]string, nRooms) // room → user IDs that joined
	for r := range nRooms {
		for i := range perRoom {
			lp := fmt.Sprintf("r%ds%d", r, i)
			s := &sender{c: register(t, srv.url, lp, "pw-"+lp), userID: "@" + lp + ":localhost", room: r}
			if i == 0 {
				m := s.c.must(http.StatusOK, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"})
				roomIDs = append(roomIDs, str(m, "room_id"))
			} else {
				s.c.must(http.StatusOK, "POST", roomURL(roomIDs[r], "/join"), map[string]any{})
			}
			members[r] = append(members[r], s.userID)
			senders = append(senders, s)
		}
	}

	res := killMidStorm(t, srv, len(senders), killAfter, func(w, i int) (string, string, string, error) {
		s, txn := senders[w], fmt.Sprintf("w%d-%d", w, i)
		status, body, err := s.c.call("PUT", sendURL(roomIDs[s.room], txn), textMessage(txn))
		if err == nil && status == http.StatusOK && str(body, "event_id") != "" {
			return txn, str(body, "event_id"), "", nil
		}
		return txn, "", fmt.Sprintf("%d %v", status, body), err
	})
	acked := res.acked

	srv = serve(t, dir, "--open-registration", "--no-rate-limit")
	for _, s := range senders {
		s.c.url = srv.url
	}
	reader := func(r int) *client { return senders[r*perRoom].c }

	// Every acknowledged event is there, as it was sent.
	var lost []string
	for txn, id := range acked {
		s := senders[senderOf(txn)]
		status, m := reader(s.room).do("GET", roomURL(roomIDs[s.room], "/event/"+url.PathEscape(id)), nil)
		if status != http.StatusOK || str(m, "event_id") != id || str(m, "sender") != s.userID || bodyOf(m) != txn {
			lost = append(lost, fmt.Sprintf("%s (%s): %d %v", id, txn, status, m))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged events are missing after the restart, e.g. %s", len(lost), len(acked), lost[0])
	}
	// A client retries what the kill cut off, with the same transaction
	// ID: whether or not the first attempt landed, it is then in the
	// room once.
	for txn, w := range res.cutOff {
		s := senders[w]
		status, body := s.c.do("PUT", sendURL(roomIDs[s.room], txn), textMessage(txn))
		if status != http.StatusOK {
			t.Errorf("retry of %s after the restart: %d %v", txn, status, body)
		}
	}
	// The transaction map is as durable as the events: a retry of an
	// acknowledged send returns the first event.
	for txn, id := range acked {
		s := senders[senderOf(txn)]
		if m := s.c.must(http.StatusOK, "PUT", sendURL(roomIDs[s.room], txn), textMessage(txn)); str(m, "event_id") != id {
			t.Errorf("retry of acknowledged %s made a new event %s, not %s", txn, str(m, "event_id"), id)
		}
	}

	for r, roomID := range roomIDs {
		bodies := map[string]int{}
		ids := map[string]int{}
		for _, ev := range messagesAll(t, reader(r), roomID) {
			ids[str(ev, "event_id")]++
			if str(ev, "type") == "m.room.message" {
				bodies[bodyOf(ev)]++
			}
		}
		for id, n := range ids {
			if n != 1 {
				t.Errorf("room %d: %s is in /messages %d times", r, id, n)
			}
		}
		for txn, id := range acked {
			if senders[senderOf(txn)].room == r && (ids[id] != 1 || bodies[txn] != 1) {
				t.Errorf("room %d: acknowledged %s (%s) is in /messages %d times, its body %d times", r, id, txn, ids[id], bodies[txn])
			}
		}
		for txn, w := range res.cutOff {
			if senders[w].room == r && bodies[txn] != 1 {
				t.Errorf("room %d: retried %s is in /messages %d times", r, txn, bodies[txn])
			}
		}

		// The membership state agrees with joined_members and with who joined.
		var state []map[string]any
		raw := reader(r).raw(http.StatusOK, "GET", roomURL(roomID, "/state"))
		if err := json.Unmarshal(raw, &state); err != nil {
			t.Fatalf("state: %v", err)
		}
		var fromState []string
		for _, ev := range state {
			if str(ev, "type") == "m.room.member" && ev["content"].(map[string]any)["membership"] == "join" {
				fromState = append(fromState, str(ev, "state_key"))
			}
		}
		var fromJoined []string
		for u := range reader(r).must(http.StatusOK, "GET", roomURL(roomID, "/joined_members"), nil)["joined"].(map[string]any) {
			fromJoined = append(fromJoined, u)
		}
		slices.Sort(fromState)
		slices.Sort(fromJoined)
		want := slices.Sorted(slices.Values(members[r]))
		if !slices.Equal(fromState, want) || !slices.Equal(fromJoined, want) {
			t.Errorf("room %d: joined per state %v, per joined_members %v, want %v", r, fromState, fromJoined, want)
		}
		// The room still takes messages.
		reader(r).must(http.StatusOK, "PUT", sendURL(roomID, "after-restart"), textMessage("after the restart"))
	}
	srv.stop()

	st, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatalf("open the store after the crash: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent after SIGKILL and restart: %v", err)
	}
	for _, roomID := range roomIDs {
		if err := servertest.CheckRoomChain(st, roomID); err != nil {
			t.Error(err)
		}
	}
}

func roomURL(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}

func sendURL(roomID, txn string) string {
	return roomURL(roomID, "/send/m.room.message/"+url.PathEscape(txn))
}

// textMessage is a message whose body is its transaction ID, so that the
// timeline shows which sends landed.
func textMessage(txn string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": txn}
}

// senderOf returns the sender index w of a transaction ID "w<w>-<i>".
func senderOf(txn string) int {
	var w, i int
	fmt.Sscanf(txn, "w%d-%d", &w, &i)
	return w
}

func bodyOf(ev map[string]any) string {
	c, _ := ev["content"].(map[string]any)
	s, _ := c["body"].(string)
	return s
}

// raw sends a request and returns the body unparsed, failing the test
// unless the status is want.
func (c *client) raw(want int, method, path string) []byte {
	c.tb.Helper()
	req, err := http.NewRequest(method, c.url+path, nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != want {
		c.tb.Fatalf("%s %s: want %d, got %d %s %v", method, path, want, resp.StatusCode, b, err)
	}
	return b
}

// messagesAll pages /messages backwards through a whole room.
func messagesAll(t *testing.T, c *client, roomID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	from := ""
	for range 1000 {
		path := roomURL(roomID, "/messages?dir=b&limit=100")
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		m := c.must(http.StatusOK, "GET", path, nil)
		for _, ev := range m["chunk"].([]any) {
			out = append(out, ev.(map[string]any))
		}
		if str(m, "end") == "" {
			return out
		}
		from = str(m, "end")
	}
	t.Fatalf("/messages did not reach the start of %s", roomID)
	return nil
}
