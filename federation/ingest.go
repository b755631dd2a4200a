package federation

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"hearth/server/pdu"
	"hearth/server/rooms"
)

// roomsAtOnce bounds the rooms of one transaction whose PDUs are taken in
// at the same time (Synapse's TRANSACTION_CONCURRENCY_LIMIT).
const roomsAtOnce = 10

// receivePDUs takes the PDUs of a transaction from origin through the
// room core's ingest pipeline and returns each one's result by event ID.
// A room's PDUs go in the order sent, those ready at once stored in one
// commit; different rooms' go at once, so their writes share commits
// (and fsyncs) too. One bad PDU fails alone.
func (s *Service) receivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[string]pduResult {
	var order []string
	byRoom := map[string][]json.RawMessage{}
	for _, raw := range pdus {
		roomID := pdu.RoomIDOf(raw)
		if _, seen := byRoom[roomID]; !seen {
			order = append(order, roomID)
		}
		byRoom[roomID] = append(byRoom[roomID], raw)
	}
	out := map[string]pduResult{}
	var mu sync.Mutex // guards out
	var wg sync.WaitGroup
	slots := make(chan struct{}, roomsAtOnce)
	for _, roomID := range order {
		wg.Add(1)
		slots <- struct{}{}
		go func(raws []json.RawMessage) { // one room's PDUs; ends with them
			defer func() { <-slots; wg.Done() }()
			// Outside the request's recovery, a panic would take the
			// server down: the room's PDUs fail instead.
			defer func() {
				if p := recover(); p != nil {
					s.cfg.Log.Error("federation: taking in a room's PDUs panicked", "origin", origin, "room", pdu.RoomIDOf(raws[0]), "panic", p)
				}
			}()
			for i, res := range s.rooms.ReceivePDUs(ctx, origin, raws) {
				if r, ok := s.pduResult(origin, raws[i], res.ID, res.Err); ok {
					mu.Lock()
					out[res.ID] = r
					mu.Unlock()
				}
			}
		}(byRoom[roomID])
	}
	wg.Wait()
	return out
}

// pduResult is what the answer to a transaction says of one PDU; ok is
// false for one with no event ID to answer under.
func (s *Service) pduResult(origin string, raw json.RawMessage, id string, err error) (pduResult, bool) {
	switch {
	case err == nil:
		return pduResult{}, true
	case id == "":
		// Unparseable, or for a room we are not in: there is no event
		// ID to answer under.
		s.cfg.Log.Info("federation: PDU dropped", "origin", origin, "room", pdu.RoomIDOf(raw), "err", err)
		return pduResult{}, false
	case errors.Is(err, rooms.ErrNotAllowed):
		// Stored as rejected: Synapse answers such a PDU without an
		// error, and peers (Complement among them) expect that.
		s.cfg.Log.Info("federation: PDU rejected by the auth rules", "origin", origin, "event_id", id, "err", err)
		return pduResult{}, true
	case errors.Is(err, rooms.ErrRejected), errors.Is(err, rooms.ErrNotInRoom):
		return pduResult{Error: err.Error()}, true
	default:
		// Our own failure (a peer unreachable for a missing event, the
		// disk): the peer learns that much, not our internals.
		s.cfg.Log.Warn("federation: PDU not processed", "origin", origin, "event_id", id, "err", err)
		return pduResult{Error: "the event could not be processed"}, true
	}
}
