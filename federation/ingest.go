package federation

import (
	"context"
	"encoding/json"
)

// receivePDUs processes the PDUs of a transaction from origin and returns
// each one's result by event ID.
func (s *Service) receivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[string]pduResult {
	out := map[string]pduResult{}
	for _, raw := range pdus {
		var head struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(raw, &head)
		out[head.EventID] = pduResult{Error: "room events over federation are not supported yet"}
	}
	return out
}
