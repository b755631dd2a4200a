package syncapi

import (
	"encoding/json"
	"errors"
	"strings"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

type sendToDeviceReq struct {
	Messages map[string]map[string]json.RawMessage `json:"messages"`
}

// sendToDevice is PUT /sendToDevice/{eventType}/{txnId}: messages for
// devices of local users ("*" for all of a user's devices), queued until
// each device's sync acknowledges them. A retried transaction is not sent
// twice. Users of other servers are reached once federation exists.
func (a *API) sendToDevice(r *httpx.Request, in *sendToDeviceReq) (*httpx.Empty, error) {
	if in.Messages == nil {
		return nil, mxerr.MissingParam("Missing messages")
	}
	typ := r.Param("eventType")
	txn := &store.TxnKey{Localpart: r.Principal.Localpart, DeviceID: r.Principal.DeviceID, TxnID: "sendToDevice\x00" + typ + "\x00" + r.Param("txnId")}
	var pos uint64
	var targets []string
	err := a.store.Update(func(tx *store.Tx) error {
		pos, targets = 0, nil
		if _, err := tx.TxnEvent(txn, 0); err == nil {
			return nil // already sent
		}
		for userID, byDevice := range in.Messages {
			localpart, ok := a.localpart(userID)
			if !ok {
				continue
			}
			devices, err := tx.Devices(localpart)
			if err != nil {
				return err
			}
			for deviceID, content := range byDevice {
				if len(content) == 0 || content[0] != '{' {
					return mxerr.BadJSON("Each message must be a JSON object")
				}
				for _, d := range devices {
					if deviceID != "*" && d.ID != deviceID {
						continue
					}
					if pos, err = tx.QueueToDevice(localpart, d.ID, &store.ToDevice{Sender: r.Principal.UserID, Type: typ, Content: content}); err != nil {
						return err
					}
				}
			}
			targets = append(targets, userID)
		}
		return tx.MarkTxn(txn, 0, pos)
	})
	if err != nil {
		return nil, err
	}
	if pos != 0 {
		a.notifier.Notify(pos, targets)
	}
	return &httpx.Empty{}, nil
}

// localpart returns the localpart of a local user ID.
func (a *API) localpart(userID string) (string, bool) {
	lp, server, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp, ok && strings.HasPrefix(userID, "@") && server == a.rooms.ServerName()
}

type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

type toDeviceList struct {
	Events []toDeviceEvent `json:"events"`
}

// ackToDevice deletes the device's messages the client has acknowledged
// by syncing with since, writing only when there are some.
func (a *API) ackToDevice(p *httpx.Principal, since uint64) error {
	var pending bool
	_ = a.store.View(func(tx *store.Tx) error { pending = tx.HasToDevice(p.Localpart, p.DeviceID, since); return nil })
	if !pending {
		return nil
	}
	return a.store.Update(func(tx *store.Tx) error {
		_, err := tx.AckToDevice(p.Localpart, p.DeviceID, since)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

// pendingToDevice returns the device's messages in (since, upto].
func (a *API) pendingToDevice(p *httpx.Principal, since, upto uint64) (*toDeviceList, error) {
	var msgs []store.ToDevice
	err := a.store.View(func(tx *store.Tx) (err error) {
		msgs, err = tx.PendingToDevice(p.Localpart, p.DeviceID, since, upto)
		return err
	})
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	out := &toDeviceList{}
	for _, m := range msgs {
		out.Events = append(out.Events, toDeviceEvent(m))
	}
	return out, nil
}
