package federation_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"hearth/server/pdu"
	"hearth/server/servertest"
)

// A redaction can arrive before the event it redacts (another server
// sent the event late, or we fetch it later): it waits for the event,
// and the event is redacted the moment it is stored. A moderator may
// also redact an event this server never received, as Synapse allows;
// someone without that power gets 404 for it.
func TestRedactionBeforeItsEvent(t *testing.T) {
	srv := servertest.Federation(t, 2)
	a, c := srv[0], srv[1]
	alice := a.Register(t, "alice", "pw-alice")
	bob := a.Register(t, "bob", "pw-bob")
	mallory := c.Register(t, "mallory", "pw-mallory")
	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	room := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)
	join := "/_matrix/client/v3/join/" + url.PathEscape(roomID) + "?server_name=" + url.QueryEscape(a.ServerName())
	mallory.Must(200, "POST", join, map[string]any{})
	bob.Must(200, "POST", room+"/join", map[string]any{})

	f := newForger(t, a, c, roomID)
	msg := f.build(mallory.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "regretted"})
	red := f.build(mallory.UserID, "m.room.redaction", nil, map[string]any{"redacts": msg.ID()})
	for _, ev := range [][]byte{red.JSON(), msg.JSON()} {
		if _, err := sendTxn(t, c, a, ev); err != nil {
			t.Fatal(err)
		}
	}
	r := alice.Must(200, "GET", room+"/event/"+url.PathEscape(msg.ID()), nil)
	if content, _ := r.JSON["content"].(map[string]any); len(content) != 0 {
		t.Fatalf("the message arrived after its redaction and shows %v", content)
	}
	if unsigned, _ := r.JSON["unsigned"].(map[string]any); unsigned["redacted_because"] == nil {
		t.Errorf("no redacted_because: %s", r)
	}

	// A v12 redaction with its target at the top level, where the
	// version does not look: it redacts nothing, and the transaction
	// answers it without an error (Complement's TestSync sends one).
	h := f.head()
	p := &pdu.Proto{Version: h.version, RoomID: roomID, Sender: mallory.UserID, Type: "m.room.redaction",
		Content: json.RawMessage(`{}`), Redacts: "$12345", PrevEvents: h.prev, Depth: h.depth + 1}
	if ev, err := pdu.Build(p, h.auth, f.signer, time.Now()); err != nil {
		t.Fatal(err)
	} else if res, err := sendTxn(t, c, a, ev.JSON()); err != nil || res[ev.ID()]["error"] != "" {
		t.Fatalf("misplaced redacts: %v, %v", res, err)
	}
	alice.Must(200, "GET", "/_matrix/client/v3/sync?timeout=0", nil)

	unknown := "$notreceivedyet0000000000000000000000000000"
	wantMatrixErr(t, "bob redacting an event nobody here has", bob.Do("PUT", room+"/redact/"+url.PathEscape(unknown)+"/b1", map[string]any{}), 404, "M_NOT_FOUND")
	alice.Must(200, "PUT", room+"/redact/"+url.PathEscape(unknown)+"/a1", map[string]any{"reason": "spam elsewhere"})
}
