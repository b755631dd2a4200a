package federation

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// maxTxnBody bounds the body of an inbound transaction: 50 PDUs and 100
// EDUs of the spec's largest size, with room for the envelope.
const maxTxnBody = 10 << 20

// transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []edu             `json:"edus"`
}

// edu is an ephemeral data unit as a transaction carries it.
type edu struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// pduResult is one PDU's entry in the response: an empty object if it
// was accepted, an error string if not.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

type sendResp struct {
	PDUs map[string]pduResult `json:"pdus"`
}

// eduHandler processes one EDU of its type from origin. An error is
// logged; EDUs have no response, so a bad one is dropped alone.
type eduHandler func(ctx context.Context, origin string, content json.RawMessage) error

// send is PUT /_matrix/federation/v1/send/{txnId}: a transaction of PDUs
// and EDUs from another server. A transaction already processed is
// answered as it was the first time, so a peer's retry changes nothing.
func (s *Service) send(r *httpx.Request) (json.RawMessage, error) {
	origin, txnID := r.Origin, r.Param("txnId")
	var prev []byte
	err := s.store.View(func(tx *store.Tx) (err error) {
		prev, err = tx.FederationTxn(origin, txnID)
		return err
	})
	if err == nil {
		return prev, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var txn transaction
	if err := httpx.DecodeJSON(r.Body(), &txn); err != nil {
		return nil, err
	}
	if len(txn.PDUs) > maxTxnPDUs || len(txn.EDUs) > maxTxnEDUs {
		r.Log.Info("federation: oversized transaction", "origin", origin, "pdus", len(txn.PDUs), "edus", len(txn.EDUs))
		return nil, mxerr.BadJSON("A transaction carries at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)
	}
	if txn.Origin != "" && txn.Origin != origin {
		return nil, mxerr.Forbidden("Transaction origin %q is not the authenticated server %q", txn.Origin, origin)
	}
	resp := sendResp{PDUs: s.receivePDUs(r.Context(), origin, txn.PDUs)}
	for _, e := range txn.EDUs {
		h := s.edus[e.Type]
		if h == nil {
			r.Log.Debug("federation: EDU of an unknown type ignored", "origin", origin, "type", e.Type)
			continue
		}
		if err := h(r.Context(), origin, e.Content); err != nil {
			r.Log.Info("federation: EDU dropped", "origin", origin, "type", e.Type, "err", err)
		}
	}
	raw, err := json.Marshal(&resp)
	if err != nil {
		return nil, err
	}
	err = s.store.Update(func(tx *store.Tx) error { return tx.PutFederationTxn(origin, txnID, time.Now().UnixMilli(), raw) })
	return raw, err
}

// txnMemory is how long an inbound transaction's response is kept to
// answer the peer's retries.
const txnMemory = 24 * time.Hour

// toDeviceMemory is how long a delivered to-device message's ID is kept
// so a resend is not delivered twice: a peer that was down for days may
// retry a transaction under a new ID with the same messages.
const toDeviceMemory = 7 * 24 * time.Hour

// PruneTransactions forgets inbound transactions older than a day and
// delivered to-device message IDs older than a week, every hour until
// ctx ends.
func (s *Service) PruneTransactions(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		var n int
		err := s.store.Update(func(tx *store.Tx) (err error) {
			if n, err = tx.PruneFederationTxns(time.Now().Add(-txnMemory).UnixMilli()); err != nil {
				return err
			}
			m, err := tx.PruneInboundToDevice(time.Now().Add(-toDeviceMemory).UnixMilli())
			n += m
			return err
		})
		if err != nil {
			s.cfg.Log.Warn("federation: pruning inbound transactions", "err", err)
		} else if n > 0 {
			s.cfg.Log.Debug("federation: pruned inbound transactions and to-device message IDs", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
