package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Event is a room event (a PDU) of a supported room version. It is
// immutable; Redact returns a new Event.
type Event struct {
	p gmsl.PDU
}

// ID returns the event ID.
func (e *Event) ID() string { return e.p.EventID() }

// RoomID returns the room ID (for a v12 create event, the one it defines).
func (e *Event) RoomID() string { return e.p.RoomID().String() }

// Type returns the event type.
func (e *Event) Type() string { return e.p.Type() }

// StateKey returns the state key, or nil for a non-state event.
func (e *Event) StateKey() *string { return e.p.StateKey() }

// IsState reports whether the event has a state key.
func (e *Event) IsState() bool { return e.p.StateKey() != nil }

// StateKeyIs reports whether the event is a state event with key k.
func (e *Event) StateKeyIs(k string) bool { return e.p.StateKeyEquals(k) }

// Sender returns the sender's user ID.
func (e *Event) Sender() string { return string(e.p.SenderID()) }

// Content returns the content object as JSON.
func (e *Event) Content() []byte { return e.p.Content() }

// JSON returns the full signed event as servers exchange it.
func (e *Event) JSON() []byte { return e.p.JSON() }

// Depth returns the event's depth.
func (e *Event) Depth() int64 { return e.p.Depth() }

// PrevEventIDs returns the IDs of the events this one follows.
func (e *Event) PrevEventIDs() []string { return e.p.PrevEventIDs() }

// AuthEventIDs returns the IDs of the events that authorise this one.
func (e *Event) AuthEventIDs() []string { return e.p.AuthEventIDs() }

// OriginServerTS returns the sender's timestamp in milliseconds.
func (e *Event) OriginServerTS() int64 { return int64(e.p.OriginServerTS()) }

// Redacts returns the ID of the event a redaction redacts, or "": the
// top-level redacts before room version 11, content.redacts from v11 on
// (the library reads only the top level).
func (e *Event) Redacts() string {
	if !RedactsInContent(e.Version()) || e.Type() != spec.MRoomRedaction {
		return e.p.Redacts()
	}
	return contentRedacts(e.p.Content())
}

// Redacted reports whether the event has been redacted.
func (e *Event) Redacted() bool { return e.p.Redacted() }

// Version returns the room version the event was parsed under.
func (e *Event) Version() string { return string(e.p.Version()) }

// Membership returns content.membership of an m.room.member event.
func (e *Event) Membership() (string, error) { return e.p.Membership() }

// StateKey names one piece of room state.
type StateKey struct {
	Type, StateKey string
}

// Proto is an event to be built.
type Proto struct {
	Version    string
	RoomID     string // "" for the create event of a room version with domainless room IDs
	Sender     string
	Type       string
	StateKey   *string
	Content    json.RawMessage
	PrevEvents []string
	Depth      int64
	Redacts    string
}

func (p *Proto) gmsl() *gmsl.ProtoEvent {
	prev := p.PrevEvents
	if prev == nil {
		prev = []string{} // the library refuses null
	}
	return &gmsl.ProtoEvent{
		SenderID: p.Sender, RoomID: p.RoomID, Type: p.Type, StateKey: p.StateKey,
		PrevEvents: prev, AuthEvents: []string{}, Depth: p.Depth, Content: spec.RawJSON(p.Content), Redacts: p.Redacts,
	}
}

// AuthStateNeeded returns the state whose current events authorise p.
func AuthStateNeeded(p *Proto) ([]StateKey, error) {
	needed, err := gmsl.StateNeededForProtoEvent(p.gmsl())
	if err != nil {
		return nil, badContent(err)
	}
	var out []StateKey
	for _, t := range needed.Tuples() {
		out = append(out, StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	return out, nil
}

// Signer signs the events this server builds.
type Signer struct {
	ServerName string
	KeyID      string
	Key        ed25519.PrivateKey
}

// Build hashes and signs p, naming as its auth events those of authState
// that the auth rules need. authState must include the create event, even
// in room versions that leave it out of auth_events.
func Build(p *Proto, authState []*Event, s Signer, now time.Time) (*Event, error) {
	provider, err := authProvider(authState)
	if err != nil {
		return nil, err
	}
	return build(p, provider, s, now)
}

// BuildAllowed is Build, then Allowed against the same authState, which
// it reads once for both. A refusal by the auth rules wraps ErrNotAllowed.
func BuildAllowed(p *Proto, authState []*Event, s Signer, now time.Time) (*Event, error) {
	provider, err := authProvider(authState)
	if err != nil {
		return nil, err
	}
	ev, err := build(p, provider, s, now)
	if err != nil {
		return nil, err
	}
	return ev, allowed(ev, provider)
}

func build(p *Proto, provider *gmsl.AuthEvents, s Signer, now time.Time) (*Event, error) {
	impl, b, err := builder(p, provider)
	if err != nil {
		return nil, err
	}
	var ev gmsl.PDU
	if impl.EventFormat() == gmsl.EventFormatV2 {
		ev, err = buildHashed(impl, b, now, s)
	} else {
		ev, err = b.Build(now, spec.ServerName(s.ServerName), gmsl.KeyID(s.KeyID), s.Key)
	}
	var ve gmsl.EventValidationError
	if errors.As(err, &ve) && ve.Code == gmsl.EventValidationTooLarge {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, ve.Message)
	}
	if err != nil {
		return nil, badContent(err)
	}
	return &Event{p: ev}, nil
}

// builder returns the library's builder for p with its auth events named.
func builder(p *Proto, provider *gmsl.AuthEvents) (gmsl.IRoomVersion, *gmsl.EventBuilder, error) {
	impl, err := version(p.Version)
	if err != nil {
		return nil, nil, err
	}
	b := impl.NewEventBuilderFromProtoEvent(p.gmsl())
	if p.Type != spec.MRoomCreate || p.StateKey == nil || *p.StateKey != "" {
		if err := b.AddAuthEvents(provider); err != nil {
			return nil, nil, badContent(err)
		}
	}
	return impl, b, nil
}

func authProvider(events []*Event) (*gmsl.AuthEvents, error) {
	pdus := make([]gmsl.PDU, 0, len(events))
	for _, e := range events {
		if e != nil {
			pdus = append(pdus, e.p)
		}
	}
	return gmsl.NewAuthEvents(pdus)
}

// ErrTooLarge means an event is over the spec's size limits (65,536
// bytes of JSON, 255 bytes of type, state key, sender or room ID).
var ErrTooLarge = errors.New("event too large")

// ErrNotAllowed wraps every refusal by the auth rules.
var ErrNotAllowed = errors.New("not allowed by the auth rules")

// Allowed checks ev against its room version's auth rules, given the
// state it is checked against (its auth events, or the state before it).
// A refusal wraps ErrNotAllowed and says which rule failed.
func Allowed(ev *Event, authState []*Event) error {
	provider, err := authProvider(authState)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	return allowed(ev, provider)
}

func allowed(ev *Event, provider *gmsl.AuthEvents) error {
	if err := thirdPartyInviteRules(ev, provider); err != nil {
		return err
	}
	if err := gmsl.Allowed(ev.p, provider, userIDForSender); err != nil {
		var na *gmsl.NotAllowed
		if errors.As(err, &na) {
			return fmt.Errorf("%w: %s", ErrNotAllowed, na.Message)
		}
		return fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	return usersDefaultRule(ev, provider)
}

// usersDefaultRule is the power levels rule gomatrixserverlib omits: a
// change of users_default, like any other level, needs the sender's level
// to be at least both the old and the new value. Without it, anyone who
// may send power levels could lift every user above themselves.
func usersDefaultRule(ev *Event, authState *gmsl.AuthEvents) error {
	if ev.Type() != spec.MRoomPowerLevels || !ev.StateKeyIs("") {
		return nil
	}
	oldEv, err := authState.PowerLevels()
	if err != nil || oldEv == nil {
		return nil // the first power levels of a room may set anything
	}
	oldPL, err1 := oldEv.PowerLevels()
	newPL, err2 := ev.p.PowerLevels()
	if err1 != nil || err2 != nil || oldPL.UsersDefault == newPL.UsersDefault {
		return nil
	}
	if PrivilegedCreators(ev.Version()) {
		if create, err := authState.Create(); err == nil && create != nil && isCreator(create, ev.Sender()) {
			return nil
		}
	}
	level := oldPL.UserLevel(ev.p.SenderID())
	if level < max(oldPL.UsersDefault, newPL.UsersDefault) {
		return fmt.Errorf("%w: sender's level %d is below users_default %d or %d", ErrNotAllowed, level, oldPL.UsersDefault, newPL.UsersDefault)
	}
	return nil
}

// isCreator reports whether userID created the room of the create event,
// or is one of its additional_creators.
func isCreator(create gmsl.PDU, userID string) bool {
	if string(create.SenderID()) == userID {
		return true
	}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	_ = json.Unmarshal(create.Content(), &c)
	for _, u := range c.AdditionalCreators {
		if u == userID {
			return true
		}
	}
	return false
}

// Parse reads an event this server stored itself (already verified).
func Parse(roomVersion string, js []byte, redacted bool) (*Event, error) {
	impl, err := version(roomVersion)
	if err != nil {
		return nil, err
	}
	ev, err := impl.NewEventFromTrustedJSON(js, redacted)
	if err != nil {
		return nil, fmt.Errorf("pdu: parse stored event: %w", err)
	}
	return &Event{p: ev}, nil
}

// ParseStored is Parse for an event stored with its ID, which is taken
// as given instead of computed (for room versions 3 and later, computing
// it means redacting, encoding and hashing the event). eventID "" means
// not known.
func ParseStored(roomVersion string, js []byte, redacted bool, eventID string) (*Event, error) {
	if eventID == "" {
		return Parse(roomVersion, js, redacted)
	}
	impl, err := version(roomVersion)
	if err != nil {
		return nil, err
	}
	ev, err := impl.NewEventFromTrustedJSONWithEventID(eventID, js, redacted)
	if err != nil {
		return nil, fmt.Errorf("pdu: parse stored event: %w", err)
	}
	return &Event{p: ev}, nil
}

// ParseUntrusted reads an event from another server: canonical JSON,
// content hash (redacting on mismatch, as the spec says), size and shape
// are checked. Signatures are checked separately.
func ParseUntrusted(roomVersion string, js []byte) (*Event, error) {
	impl, err := version(roomVersion)
	if err != nil {
		return nil, err
	}
	// The library reads some broken JSON (a key without its colon) in
	// newer room versions, and the event would then not hash to the ID
	// it is given (FuzzParseUntrusted).
	if !json.Valid(js) {
		return nil, errors.New("pdu: untrusted event: not valid JSON")
	}
	ev, err := impl.NewEventFromUntrustedJSON(js)
	// An event the library flags as over its stricter limits yet
	// persistable (a state key over 255 bytes in an older room) is kept,
	// as the room versions' own rules allow it.
	var verr gmsl.EventValidationError
	if err != nil && !(errors.As(err, &verr) && verr.Persistable && ev != nil) {
		return nil, fmt.Errorf("pdu: untrusted event: %w", err)
	}
	if err := checkAccessors(ev); err != nil {
		return nil, fmt.Errorf("pdu: untrusted event: %w", err)
	}
	return &Event{p: ev}, nil
}

// checkAccessors reads every field of a parsed event whose accessor the
// library lets panic on a malformed value (a room ID too short to be
// one, a create event's creators that are not user IDs), so such an
// event is refused at the door instead of panicking wherever it is
// first looked at: on a server's goroutine, with a peer's bytes.
func checkAccessors(ev gmsl.PDU) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed event: %v", p)
		}
	}()
	_ = ev.EventID()
	_ = ev.RoomID()
	_ = ev.AuthEventIDs()
	_ = ev.PrevEventIDs()
	_ = ev.SenderID()
	_ = ev.Redacts()
	if ev.Type() == spec.MRoomCreate && ev.StateKeyEquals("") && PrivilegedCreators(string(ev.Version())) {
		_ = gmsl.CreatorsFromCreateEvent(ev) // only these versions read additional_creators
	}
	return nil
}

// Redact returns the event with its content stripped by its room
// version's redaction algorithm.
func (e *Event) Redact() (*Event, error) {
	impl, err := version(e.Version())
	if err != nil {
		return nil, err
	}
	js, err := impl.RedactEventJSON(e.JSON())
	if err != nil {
		return nil, err
	}
	return Parse(e.Version(), js, true)
}

// badContent reports a library refusal of malformed content as a client
// error.
func badContent(err error) error {
	return &contentError{err}
}

type contentError struct{ err error }

func (c *contentError) Error() string { return "pdu: " + c.err.Error() }
func (c *contentError) Unwrap() error { return c.err }

// IsBadContent reports whether err is a refusal of malformed event content.
func IsBadContent(err error) bool {
	var c *contentError
	return errors.As(err, &c)
}
