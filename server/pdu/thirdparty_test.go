package pdu

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
	"time"
)

// A third-party invite is built by the invitee's server with the
// inviter as sender: it needs that server's signature, not the
// sender's. Every other invite still needs the sender's server's, and a
// third-party invite still needs the invitee's server's.
func TestThirdPartyInviteSignatures(t *testing.T) {
	keys := func(_ context.Context, server, keyID string, _ int64) (string, error) {
		if keyID != "ed25519:auth" {
			return "", errors.New("unknown key")
		}
		return base64.RawStdEncoding.EncodeToString(signerFor(server).Key.Public().(ed25519.PublicKey)), nil
	}
	tpi := `{"membership":"invite","third_party_invite":{"display_name":"b...","signed":{"mxid":"@bob:b.test","token":"tok","signatures":{}}}}`
	for _, c := range []struct {
		name, target, content, signer string
		ok                            bool
	}{
		{"third-party invite signed by the invitee's server", "@bob:b.test", tpi, "b.test", true},
		{"third-party invite signed by a third server", "@bob:b.test", tpi, "c.test", false},
		{"plain invite signed by the invitee's server alone", "@bob:b.test", `{"membership":"invite"}`, "b.test", false},
		{"plain invite signed by the sender's server alone", "@bob:b.test", `{"membership":"invite"}`, "hs.test", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range []string{"1", "6", "11", "12"} {
				r := newAuthRoom(t, v, nil)
				target := c.target
				p := &Proto{Version: v, RoomID: r.roomID, Sender: "@alice:hs.test", Type: "m.room.member", StateKey: &target,
					Content: []byte(c.content), PrevEvents: []string{r.last.ID()}, Depth: r.last.Depth() + 1}
				ev, err := Build(p, r.authState(), signerFor(c.signer), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if err := VerifySignatures(context.Background(), ev, keys); (err == nil) != c.ok {
					t.Errorf("v%s: VerifySignatures = %v, want ok=%v", v, err, c.ok)
				}
			}
		})
	}
}
