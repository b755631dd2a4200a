package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"hearth/server/servertest"
	"hearth/store"
)

// A room's writer is serialised and the store group-commits across rooms:
// 20 rooms with 5 senders each, all sending at once, must give every
// acknowledged event exactly one place in its room's timeline, and each
// room one chain (every event follows exactly the one before it, one
// forward extremity), as a local-only room never forks.
func TestConcurrentSendsAcrossRooms(t *testing.T) {
	const (
		nRooms    = 20
		perRoom   = 5  // senders, each its own user
		perSender = 10 // messages each
	)
	s := servertest.Start(t, servertest.Options{})
	type sender struct {
		c    *servertest.Client
		room string
	}
	var roomIDs []string
	var senders []sender
	for r := range nRooms {
		owner := s.Register(t, servertest.UniqueName("owner"), "pw")
		roomID := createRoom(t, owner, map[string]any{"preset": "public_chat", "name": fmt.Sprintf("room %d", r)})
		roomIDs = append(roomIDs, roomID)
		for i := range perRoom {
			c := owner
			if i > 0 {
				c = s.Register(t, servertest.UniqueName("sender"), "pw")
				c.Must(200, "POST", roomPath(roomID, "/join"), map[string]any{})
			}
			senders = append(senders, sender{c, roomID})
		}
	}

	var (
		mu       sync.Mutex              // guards acked, problems
		acked    = map[string][]string{} // room ID → event IDs answered with 200
		problems []string                // anything but a 200 with an event ID
		start    = make(chan struct{})   // closed to release every sender at once
		wg       sync.WaitGroup
	)
	for i, snd := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Its own connection, kept alive, so the senders really send at
			// the same moment rather than queueing for two shared ones.
			hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			<-start
			for m := range perSender {
				id, err := trySend(hc, snd.c, snd.room, fmt.Sprintf("c%d-%d", i, m), fmt.Sprintf("message %d from sender %d", m, i))
				mu.Lock()
				if err != nil {
					problems = append(problems, err.Error())
				} else {
					acked[snd.room] = append(acked[snd.room], id)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(problems) > 0 {
		t.Fatalf("%d of %d sends failed, e.g. %s", len(problems), len(senders)*perSender, problems[0])
	}

	for r, roomID := range roomIDs {
		owner := senders[r*perRoom].c
		seen := map[string]int{}
		messages := 0
		for _, ev := range pageAll(t, owner, roomID) {
			seen[ev.EventID]++
			if ev.Type == "m.room.message" {
				messages++
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("room %s: %s is in the timeline %d times", roomID, id, n)
			}
		}
		for _, id := range acked[roomID] {
			if seen[id] == 0 {
				t.Errorf("room %s: acknowledged %s is not in the timeline", roomID, id)
			}
		}
		if want := perRoom * perSender; len(acked[roomID]) != want || messages != want {
			t.Errorf("room %s: %d acknowledged, %d messages in the timeline, want %d", roomID, len(acked[roomID]), messages, want)
		}
	}

	s.Stop(t)
	st, err := store.Open(s.DataDir, time.Second)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	defer st.Close()
	for _, roomID := range roomIDs {
		if err := servertest.CheckRoomChain(st, roomID); err != nil {
			t.Error(err)
		}
	}
}

// trySend sends one text message as c on its own HTTP client and returns
// the event ID of a 200; it is safe from any goroutine.
func trySend(hc *http.Client, c *servertest.Client, roomID, txnID, body string) (string, error) {
	raw, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	req, err := http.NewRequest("PUT", c.URL+roomPath(roomID, "/send/m.room.message/"+url.PathEscape(txnID)), bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("send %s: %w", txnID, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("send %s: %w", txnID, err)
	}
	var r struct {
		EventID string `json:"event_id"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(out, &r) != nil || r.EventID == "" {
		return "", fmt.Errorf("send %s: %d %s", txnID, resp.StatusCode, out)
	}
	return r.EventID, nil
}

// timelineEvent is what the chain checks read of a client event.
type timelineEvent struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
}

// pageAll pages /messages backwards through a whole room, newest first.
func pageAll(t *testing.T, c *servertest.Client, roomID string) []timelineEvent {
	t.Helper()
	var out []timelineEvent
	from := ""
	for range 1000 {
		path := roomPath(roomID, "/messages?dir=b&limit=37") // not a divisor of anything: pages end mid-room
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := c.Must(200, "GET", path, nil)
		var page struct {
			Chunk []timelineEvent `json:"chunk"`
			End   string          `json:"end"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("messages: %v: %s", err, r)
		}
		out = append(out, page.Chunk...)
		if page.End == "" {
			return out
		}
		from = page.End
	}
	t.Fatalf("room %s: /messages did not reach the start", roomID)
	return nil
}
