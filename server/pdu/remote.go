package pdu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// KeyFunc returns the unpadded base64 public key keyID of server, valid
// at atTS (milliseconds): how events from other servers are verified.
type KeyFunc func(ctx context.Context, server, keyID string, atTS int64) (string, error)

// verifier adapts a KeyFunc to the library's JSONVerifier.
type verifier struct{ keys KeyFunc }

func (v verifier) VerifyJSONs(ctx context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		server := string(r.ServerName)
		ids, err := gmsl.ListKeyIDs(server, r.Message)
		if err != nil || len(ids) == 0 {
			out[i].Error = fmt.Errorf("%w: not signed by %s", ErrBadSignature, server)
			continue
		}
		out[i].Error = fmt.Errorf("%w: no valid signature by %s", ErrBadSignature, server)
		for _, id := range ids {
			// A policy server's signature is checked against the key in
			// the room's state, not a published one: the spec has it
			// skipped here, so no key server is asked for it.
			if !strings.HasPrefix(string(id), "ed25519:") || id == PolicyKeyID {
				continue
			}
			pub, err := v.keys(ctx, server, string(id), int64(r.AtTS))
			if err != nil {
				out[i].Error = fmt.Errorf("key %s of %s: %w", id, server, err)
				continue
			}
			if VerifyJSONSignature(r.Message, server, string(id), pub) == nil {
				out[i].Error = nil
				break
			}
		}
	}
	return out, nil
}

// VerifySignatures checks that every server that must have signed ev (the
// sender's, and for some membership events others) did, with keys valid
// when it was sent. A third-party invite needs its invitee's server's
// signature, not its sender's (see signatureSenders).
func VerifySignatures(ctx context.Context, ev *Event, keys KeyFunc) error {
	if err := gmsl.VerifyEventSignatures(ctx, ev.p, verifier{keys}, signatureSenders(ev)); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// Origin returns the server of an event's sender.
func (e *Event) Origin() string {
	_, server, _ := strings.Cut(e.Sender(), ":")
	return server
}

// Resolve runs the state resolution algorithm of the room version over
// state sets (the states after each forward extremity), given the auth
// chains of their conflicted events, and returns the resolved state.
// load, if not nil, returns other events of the room by ID (nil if
// unknown): the auth chains of the unconflicted state, which room
// version 12's algorithm walks as far as it needs.
func Resolve(version string, stateSets [][]*Event, authEvents []*Event, load func(eventID string) *Event) ([]*Event, error) {
	switch len(stateSets) {
	case 0:
		return nil, nil
	case 1:
		return stateSets[0], nil
	}
	sets := make([][]gmsl.PDU, len(stateSets))
	for i, set := range stateSets {
		for _, e := range set {
			sets[i] = append(sets[i], e.p)
		}
	}
	auth := make([]gmsl.PDU, len(authEvents))
	for i, e := range authEvents {
		auth[i] = e.p
	}
	var loadPDU func(string) gmsl.PDU
	if load != nil {
		loadPDU = func(id string) gmsl.PDU {
			if e := load(id); e != nil {
				return e.p
			}
			return nil
		}
	}
	resolved, err := resolveConflicts(version, sets, auth, loadPDU)
	if err != nil {
		return nil, err
	}
	out := make([]*Event, len(resolved))
	for i, p := range resolved {
		out[i] = &Event{p: p}
	}
	return out, nil
}

// resolveConflicts runs the room version's state resolution: algorithm
// 2.1 (room version 12) by resolveV21, the library's for the others.
func resolveConflicts(version string, sets [][]gmsl.PDU, auth []gmsl.PDU, load func(string) gmsl.PDU) (out []gmsl.PDU, err error) {
	impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(version))
	if err != nil {
		return nil, err
	}
	if impl.StateResAlgorithm() == gmsl.StateResV2_1 {
		return resolveV21(sets, auth, load)
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("pdu: state resolution: %v", p)
		}
	}()
	// The library looks up the state sets' own events among the auth
	// events too: pass both.
	seen := make(map[string]bool, len(auth))
	all := make([]gmsl.PDU, 0, len(auth))
	for _, e := range auth {
		if !seen[e.EventID()] {
			seen[e.EventID()] = true
			all = append(all, e)
		}
	}
	for _, set := range sets {
		for _, e := range set {
			if !seen[e.EventID()] {
				seen[e.EventID()] = true
				all = append(all, e)
			}
		}
	}
	notRejected := func(string) bool { return false }
	return gmsl.ResolveConflictsNew(gmsl.RoomVersion(version), sets, all, userIDForSender, notRejected)
}

// Template returns ev as make_join, make_leave and make_knock answer it:
// the event for the joining server to complete and sign, without hashes,
// signatures, ID or unsigned data.
func Template(ev *Event) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		return nil, err
	}
	for _, k := range []string{"hashes", "signatures", "event_id", "unsigned"} {
		delete(m, k)
	}
	return json.Marshal(m)
}

// BuildFromTemplate completes, hashes and signs an event template another
// server made (make_join and its kind) for a room of version.
func BuildFromTemplate(roomVersion string, template []byte, s Signer, now time.Time) (_ *Event, err error) {
	// The library panics on some malformed references (an empty event
	// ID among a v1 or v2 template's prev_events): another server's
	// template is refused instead.
	defer func() {
		if p := recover(); p != nil {
			err = badContent(fmt.Errorf("malformed template: %v", p))
		}
	}()
	impl, err := version(roomVersion)
	if err != nil {
		return nil, err
	}
	var t struct {
		Sender     string          `json:"sender"`
		RoomID     string          `json:"room_id"`
		Type       string          `json:"type"`
		StateKey   *string         `json:"state_key"`
		PrevEvents json.RawMessage `json:"prev_events"`
		AuthEvents json.RawMessage `json:"auth_events"`
		Depth      int64           `json:"depth"`
		Content    json.RawMessage `json:"content"`
		Redacts    string          `json:"redacts"`
	}
	if err := json.Unmarshal(template, &t); err != nil {
		return nil, badContent(err)
	}
	pe := &gmsl.ProtoEvent{SenderID: t.Sender, RoomID: t.RoomID, Type: t.Type, StateKey: t.StateKey,
		Depth: t.Depth, Content: spec.RawJSON(t.Content), Redacts: t.Redacts}
	if impl.EventFormat() == gmsl.EventFormatV2 {
		var prev, auth []string
		if json.Unmarshal(t.PrevEvents, &prev) != nil || json.Unmarshal(t.AuthEvents, &auth) != nil {
			return nil, badContent(errors.New("prev_events and auth_events must be lists of event IDs"))
		}
		pe.PrevEvents, pe.AuthEvents = prev, auth
	} else {
		var prev, auth []any
		if json.Unmarshal(t.PrevEvents, &prev) != nil || json.Unmarshal(t.AuthEvents, &auth) != nil {
			return nil, badContent(errors.New("malformed prev_events or auth_events"))
		}
		pe.PrevEvents, pe.AuthEvents = prev, auth
	}
	ev, err := impl.NewEventBuilderFromProtoEvent(pe).Build(now, spec.ServerName(s.ServerName), gmsl.KeyID(s.KeyID), s.Key)
	if err == nil {
		err = checkAccessors(ev) // the template is another server's
	}
	if err != nil {
		return nil, badContent(err)
	}
	return &Event{p: ev}, nil
}

// AddSignature returns ev signed by s as well (a resident server's
// signature on a restricted join it authorised).
func AddSignature(ev *Event, s Signer) (*Event, error) {
	impl, err := version(ev.Version())
	if err != nil {
		return nil, err
	}
	signed := ev.p.Sign(s.ServerName, gmsl.KeyID(s.KeyID), s.Key).JSON()
	p, err := impl.NewEventFromTrustedJSON(signed, ev.Redacted())
	if err != nil {
		return nil, err
	}
	return &Event{p: p}, nil
}

// RoomIDOf returns the room_id of a PDU's JSON, "" if it has none.
func RoomIDOf(js []byte) string {
	var h struct {
		RoomID string `json:"room_id"`
	}
	_ = json.Unmarshal(js, &h)
	return h.RoomID
}

// AuthStateNeededFor returns the state keys whose events authorise ev.
func AuthStateNeededFor(ev *Event) []StateKey {
	var out []StateKey
	for _, t := range gmsl.StateNeededForAuth([]gmsl.PDU{ev.p}).Tuples() {
		out = append(out, StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	return out
}
