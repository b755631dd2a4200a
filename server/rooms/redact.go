package rooms

import (
	"encoding/json"
	"errors"
	"strings"

	"hearth/server/mxerr"
	"hearth/server/pdu"
	"hearth/store"
)

// Redaction is a request to redact an event.
type Redaction struct {
	Sender  string
	EventID string // the event to redact
	Reason  string
	Txn     *store.TxnKey
}

// redactTxnSep separates the client's transaction ID from the rest of a
// redaction's TxnKey.TxnID. Transaction IDs are scoped to one endpoint
// (spec: "Transaction identifiers"), so the same ID on /send and /redact,
// or on /redact of two events, must be two transactions.
const redactTxnSep = "\x00redact "

// RedactTxn returns the transaction key of PUT /redact/{eventId}/{txnId}.
func RedactTxn(localpart, deviceID, eventID, txnID string) *store.TxnKey {
	return &store.TxnKey{Localpart: localpart, DeviceID: deviceID, TxnID: txnID + redactTxnSep + eventID}
}

// clientTxnID returns the transaction ID the client chose, as it sent it.
func clientTxnID(k *store.TxnKey) string {
	id, _, _ := strings.Cut(k.TxnID, redactTxnSep)
	return id
}

// Redact sends an m.room.redaction of r.EventID and returns its event ID.
// The sender may redact their own events; other people's need the room's
// redact power level.
func (s *Service) Redact(roomID string, r *Redaction) (string, error) {
	content := map[string]string{}
	if r.Reason != "" {
		content["reason"] = r.Reason
	}
	b, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	return s.Send(roomID, &Draft{Sender: r.Sender, Type: "m.room.redaction", Content: b, Redacts: r.EventID, Txn: r.Txn})
}

// checkRedaction places the target of a redaction (top level before room
// version 11, content.redacts after; clients may use either, spec v1.18)
// and applies the spec's redaction rule, which the auth rules of room
// versions 3 and later do not: the sender of the original event, or
// someone at the redact power level.
func (s *Service) checkRedaction(tx *store.Tx, room *store.Room, d *Draft) (*Draft, error) {
	var content map[string]json.RawMessage
	if err := json.Unmarshal(d.Content, &content); err != nil || content == nil {
		return nil, mxerr.BadJSON("Content must be a JSON object")
	}
	target := d.Redacts
	if raw, ok := content["redacts"]; ok && target == "" {
		if json.Unmarshal(raw, &target) != nil {
			return nil, mxerr.BadJSON("redacts must be an event ID")
		}
	}
	if target == "" {
		return nil, mxerr.BadJSON("A redaction needs the event ID it redacts")
	}
	nd := *d
	if pdu.RedactsInContent(room.Version) {
		content["redacts"], _ = json.Marshal(target)
		nd.Redacts = ""
	} else {
		delete(content, "redacts")
		nd.Redacts = target
	}
	b, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	nd.Content = b

	rec, err := servableEvent(tx, target)
	unknown := errors.Is(err, store.ErrNotFound)
	if err == nil && rec.RoomNID != room.NID {
		return nil, mxerr.NotFound("Event not found")
	}
	if err != nil && !unknown {
		return nil, err
	}
	if !unknown {
		orig, err := parseRec(room.Version, rec)
		if err != nil {
			return nil, err
		}
		if orig.Sender() == d.Sender {
			return &nd, nil
		}
	}
	// Someone else's event, or one this server has not received (a
	// moderator may redact what other servers hold, as Synapse lets
	// them): only with the power to redact others' events.
	create, err := s.stateEvent(tx, room, "m.room.create", "")
	if err != nil {
		return nil, err
	}
	pl, err := s.stateEvent(tx, room, "m.room.power_levels", "")
	if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
		pl, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	ok, err := pdu.MayRedactOthers(create, pl, d.Sender)
	if err != nil {
		return nil, err
	}
	if !ok && unknown {
		return nil, mxerr.NotFound("Event not found")
	}
	if !ok {
		return nil, mxerr.Forbidden("You don't have permission to redact events sent by others")
	}
	return &nd, nil
}

// indexEvent records, in the transaction that appends the local event ev
// at pos, what the read side needs beyond the event itself: the client
// transaction that sent it, its relation to a parent, and, for a
// redaction, the redacted form of its target.
func (s *Service) indexEvent(tx *store.Tx, room *store.Room, ev *pdu.Event, pos uint64, txn *store.TxnKey) error {
	if txn != nil {
		if err := tx.PutEventTxn(pos, txn); err != nil {
			return err
		}
	}
	if err := s.indexRelation(tx, room, ev, pos); err != nil {
		return err
	}
	if ev.Type() == "m.room.redaction" && !ev.IsState() {
		if err := s.applyRedaction(tx, room, ev.Redacts(), pos); err != nil {
			return err
		}
	}
	return s.applyPendingRedaction(tx, room, ev)
}

// applyPendingRedaction applies to ev, just stored, a redaction of it
// that came first, if that redaction may take effect on it.
func (s *Service) applyPendingRedaction(tx *store.Tx, room *store.Room, ev *pdu.Event) error {
	redPos, ok, err := tx.TakePendingRedaction(ev.ID())
	if err != nil || !ok {
		return err
	}
	red, err := s.heads.event(tx, room.Version, redPos)
	if err != nil {
		return err
	}
	if red.RoomID() != room.RoomID || !s.mayRedact(tx, room, red) {
		return nil
	}
	return s.applyRedaction(tx, room, ev.ID(), redPos)
}

// applyRedaction stores the redacted form of the event targetID in place
// of the original and unlinks it from its relation: a redacted child no
// longer counts in its parent's aggregations (spec: "Aggregations of
// child events"). Its own children stay.
func (s *Service) applyRedaction(tx *store.Tx, room *store.Room, targetID string, redaction uint64) error {
	if targetID == "" {
		return nil // a redaction naming no event (its redacts is misplaced for the room version)
	}
	rec, err := tx.EventByID(targetID)
	if errors.Is(err, store.ErrNotFound) {
		return tx.PutPendingRedaction(targetID, redaction) // it waits for the event
	}
	if err == nil && rec.RoomNID != room.NID {
		return nil
	}
	if err != nil {
		return err
	}
	orig, err := parseRec(room.Version, rec)
	if err != nil {
		return err
	}
	if rel := relatesTo(orig.Content()); rel != nil {
		if ppos, err := tx.EventPos(rel.EventID); err == nil {
			if err := tx.RemoveRelation(room.NID, ppos, rel.RelType, rec.Pos); err != nil {
				return err
			}
		}
	}
	red := orig
	if !orig.Redacted() {
		if red, err = orig.Redact(); err != nil {
			return err
		}
	}
	return tx.Redact(rec.Pos, redaction, red.JSON())
}
