package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"hearth/server/mxerr"
)

// PolicySign asks server, a room's policy server, to sign ev, a PDU
// (POST /_matrix/policy/v1/sign), and returns the signatures it answered
// with. A refusal it answered with a Matrix error wraps that error as an
// *mxerr.Error, for the room core to relay to the client as the spec
// asks; anything else (no answer, no errcode) is an error of our own.
func (s *Service) PolicySign(ctx context.Context, server string, ev json.RawMessage) (map[string]map[string]string, error) {
	var resp map[string]map[string]string
	err := s.client.Call(ctx, "POST", server, "/_matrix/policy/v1/sign", ev, &resp)
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		me := &mxerr.Error{Status: e.Status, Code: e.Code, Message: e.Message}
		if e.RetryAfterMS > 0 {
			me = me.With("retry_after_ms", e.RetryAfterMS)
		}
		return nil, fmt.Errorf("policy server %s: %w", server, me)
	}
	if err != nil {
		return nil, fmt.Errorf("policy server %s: %w", server, err)
	}
	return resp, nil
}
