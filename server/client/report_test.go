package client_test

import (
	"net/url"
	"testing"
	"time"

	"hearth/server/servertest"
	"hearth/store"
)

// Spec: "Reporting content": reports reach the admins' store; an event
// report from outside the room is a 404 that tells nothing.
func TestReports(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	alice := s.Register(t, "alice", "pw")
	mallory := s.Register(t, "mallory", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	mallory.Must(200, "POST", roomPath(room, "/join"), map[string]any{})
	bad := send(t, mallory, room, "buy cheap watches")

	alice.Must(200, "POST", roomPath(room, "/report/"+url.PathEscape(bad)), map[string]any{"reason": "spam", "score": -100})
	if r := alice.Do("POST", roomPath(room, "/report/$nope"), map[string]any{"reason": "x"}); r.Status != 404 {
		t.Fatalf("report of an unknown event: %s", r)
	}
	outsider := s.Register(t, "outsider", "pw")
	if r := outsider.Do("POST", roomPath(room, "/report/"+url.PathEscape(bad)), map[string]any{"reason": "x"}); r.Status != 404 {
		t.Fatalf("report from outside the room: %s", r)
	}
	if r := alice.Do("POST", roomPath(room, "/report/"+url.PathEscape(bad)), map[string]any{"score": 5}); r.Status != 400 {
		t.Fatalf("score out of range: %s", r)
	}
	outsider.Must(200, "POST", roomPath(room, "/report"), map[string]any{"reason": "spam room"})
	if r := alice.Do("POST", roomPath("!nope:localhost", "/report"), map[string]any{}); r.Status != 404 {
		t.Fatalf("report of an unknown room: %s", r)
	}

	s.Stop(t)
	st, err := store.Open(s.DataDir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var reports []store.Report
	_ = st.View(func(tx *store.Tx) (err error) { reports, err = tx.Reports(); return })
	if len(reports) != 2 || reports[0].EventID != bad || reports[0].Reason != "spam" || reports[1].EventID != "" || reports[1].Reporter != "@outsider:localhost" {
		t.Fatalf("stored reports: %+v", reports)
	}
}
