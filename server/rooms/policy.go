package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Policy servers (Matrix 1.18, MSC4284): a room whose current state
// names one in m.room.policy has every event but that state event itself
// checked by it. We ask it to sign each event one of our users sends
// before the event goes anywhere, and refuse the client's request when it
// will not; an event from another server without a valid signature of it
// we ask it about ourselves, and soft-fail if it still has none.

// policyTimeout bounds one request to a policy server. The room's writer
// waits on it; Synapse found a few seconds too short for policy servers
// that scan media.
const policyTimeout = 15 * time.Second

// policyServer is the policy server a room uses: its server name and the
// unpadded base64 ed25519 key its signatures are checked with.
type policyServer struct {
	name string
	key  string
}

// policyExempt reports whether an event of typ and stateKey is never
// checked by a policy server: only the m.room.policy state event itself,
// so a room can always change or drop its policy server.
func policyExempt(typ string, stateKey *string) bool {
	return typ == "m.room.policy" && stateKey != nil && *stateKey == ""
}

// policyServerOf returns the policy server room uses, nil for none: its
// current state must hold an m.room.policy event (empty state key) with
// a string via and a string public_keys.ed25519, and via must have a
// joined user in the room. We are not a policy server, so a room naming
// us uses none, as Synapse has it: asking ourselves could only fail.
func (s *Service) policyServerOf(tx *store.Tx, room *store.Room) (*policyServer, error) {
	ps, err := s.policyNamed(tx, room)
	if err != nil || ps == nil {
		return nil, err
	}
	joined, err := s.joinedServers(tx, room)
	if err != nil || !slices.Contains(joined, ps.name) {
		return nil, err
	}
	return ps, nil
}

// policyNamed returns the policy server room's m.room.policy validly
// names, whether or not it is in the room; nil for none, or us.
func (s *Service) policyNamed(tx *store.Tx, room *store.Room) (*policyServer, error) {
	pos, err := tx.CurrentStateEvent(room.NID, store.StateKey{Type: "m.room.policy", Key: ""})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ev, err := s.heads.event(tx, room.Version, pos)
	if err != nil {
		return nil, err
	}
	var c struct {
		Via        *string                    `json:"via"`
		PublicKeys map[string]json.RawMessage `json:"public_keys"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil || c.Via == nil || *c.Via == s.serverName {
		return nil, nil
	}
	var key string
	if json.Unmarshal(c.PublicKeys["ed25519"], &key) != nil {
		return nil, nil
	}
	return &policyServer{name: *c.Via, key: key}, nil
}

// policySatisfiedTx reports, in a write transaction that stores remote
// events together, whether ev is surely recommended for the room without
// asking anyone: exempt, in a room whose m.room.policy names no policy
// server, or signed by the one it names. Otherwise ingest takes it on
// its own, where the policy server can be asked. Whether that server is
// in the room does not matter here (a valid signature is one either
// way), which spares the committer a read of the room's members.
func (s *Service) policySatisfiedTx(tx *store.Tx, room *store.Room, ev *pdu.Event) (bool, error) {
	if policyExempt(ev.Type(), ev.StateKey()) {
		return true, nil
	}
	ps, err := s.policyNamed(tx, room)
	if err != nil || ps == nil {
		return err == nil, err
	}
	return pdu.VerifyEventSignature(ev, ps.name, pdu.PolicyKeyID, ps.key) == nil, nil
}

// askPolicyServer asks ps to sign ev (POST /_matrix/policy/v1/sign) and
// returns ev with the signature, which must verify with the room's key
// for ps. A refusal ps answered with comes back wrapping its Matrix error.
func (s *Service) askPolicyServer(ctx context.Context, ps *policyServer, ev *pdu.Event) (*pdu.Event, error) {
	if s.remote == nil {
		return nil, errors.New("no federation")
	}
	sigs, err := s.remote.PolicySign(ctx, ps.name, ev.JSON())
	if err != nil {
		return nil, err
	}
	sig := sigs[ps.name][pdu.PolicyKeyID]
	if sig == "" {
		return nil, fmt.Errorf("policy server %s answered without its %s signature", ps.name, pdu.PolicyKeyID)
	}
	signed, err := pdu.WithSignature(ev, ps.name, pdu.PolicyKeyID, sig)
	if err != nil {
		return nil, err
	}
	if err := pdu.VerifyEventSignature(signed, ps.name, pdu.PolicyKeyID, ps.key); err != nil {
		return nil, fmt.Errorf("policy server %s: its signature does not verify with the room's key", ps.name)
	}
	return signed, nil
}

// policySign has ps (nil: the room uses none) sign ev, an event one of
// our users is sending, and returns it signed. When ps does not sign it,
// the event must go nowhere and the client is told: the policy server's
// own refusal verbatim where it gave one a client can take, else 502.
func (s *Service) policySign(ps *policyServer, ev *pdu.Event) (*pdu.Event, error) {
	if ps == nil || policyExempt(ev.Type(), ev.StateKey()) {
		return ev, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), policyTimeout)
	defer cancel()
	signed, err := s.askPolicyServer(ctx, ps, ev)
	if err == nil {
		return signed, nil
	}
	s.log.Info("policy server did not sign a local event", "event_id", ev.ID(), "room", ev.RoomID(), "policy_server", ps.name, "why", err)
	if e, ok := mxerr.As(err); ok && relayable(e) {
		return nil, e
	}
	return nil, &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN",
		Message: fmt.Sprintf("The room's policy server %s did not sign the event", ps.name)}
}

// relayable reports whether a policy server's error may go to a client
// as it is: a refusal (400, 403 M_FORBIDDEN), an unknown room (404
// M_NOT_FOUND) or a rate limit (429), which the spec has relayed
// verbatim. Its 401 or a token errcode would concern our request to it,
// not the client's, and M_UNRECOGNIZED would tell a client its own
// server lacks the endpoint; those, like 5xx, are ours to report.
func relayable(e *mxerr.Error) bool {
	switch e.Code {
	case "", "M_UNRECOGNIZED", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_UNAUTHORIZED":
		return false
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests:
		return true
	}
	return false
}

// policyCheck is the spec's last check on receipt of a PDU (its step 7),
// made here before ingest's step 5, so the policy server is asked also
// about an event the state then refuses: in a room that uses a policy
// server, ev must carry a signature of it
// that verifies with the key in the room's state. Without one we ask it
// for one, as the spec says, since its key may have rotated since. It
// returns ev, signed where we asked, and why it is not recommended for
// the room (to be soft-failed), nil when it is.
func (s *Service) policyCheck(ctx context.Context, room *store.Room, ev *pdu.Event) (signed *pdu.Event, refusal, err error) {
	if policyExempt(ev.Type(), ev.StateKey()) {
		return ev, nil, nil
	}
	var ps *policyServer
	err = s.store.View(func(tx *store.Tx) (err error) {
		ps, err = s.policyServerOf(tx, room)
		return err
	})
	if err != nil || ps == nil {
		return ev, nil, err
	}
	if pdu.VerifyEventSignature(ev, ps.name, pdu.PolicyKeyID, ps.key) == nil {
		return ev, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, policyTimeout)
	defer cancel()
	if signed, refusal = s.askPolicyServer(ctx, ps, ev); refusal != nil {
		return ev, fmt.Errorf("no valid signature of the room's policy server %s: %w", ps.name, refusal), nil
	}
	return signed, nil, nil
}
