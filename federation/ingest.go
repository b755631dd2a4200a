package federation

import (
	"context"
	"encoding/json"
	"errors"

	"hearth/server/pdu"
	"hearth/server/rooms"
)

// receivePDUs takes the PDUs of a transaction from origin through the
// room core's ingest pipeline, one after another so a room's events are
// processed in the order sent, and returns each one's result by event ID.
// One bad PDU fails alone.
func (s *Service) receivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[string]pduResult {
	out := map[string]pduResult{}
	for _, raw := range pdus {
		id, err := s.rooms.ReceivePDU(ctx, origin, raw)
		switch {
		case err == nil:
			out[id] = pduResult{}
		case id == "":
			// Unparseable, or for a room we are not in: there is no
			// event ID to answer under.
			s.cfg.Log.Info("federation: PDU dropped", "origin", origin, "room", pdu.RoomIDOf(raw), "err", err)
		case errors.Is(err, rooms.ErrNotAllowed):
			// Stored as rejected: Synapse answers such a PDU without an
			// error, and peers (Complement among them) expect that.
			s.cfg.Log.Info("federation: PDU rejected by the auth rules", "origin", origin, "event_id", id, "err", err)
			out[id] = pduResult{}
		case errors.Is(err, rooms.ErrRejected):
			out[id] = pduResult{Error: err.Error()}
		case errors.Is(err, rooms.ErrNotInRoom):
			out[id] = pduResult{Error: err.Error()}
		default:
			// Our own failure (a peer unreachable for a missing event, the
			// disk): the peer learns that much, not our internals.
			s.cfg.Log.Warn("federation: PDU not processed", "origin", origin, "event_id", id, "err", err)
			out[id] = pduResult{Error: "the event could not be processed"}
		}
	}
	return out
}
