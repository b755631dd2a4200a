package store

import (
	"encoding/json"
	"fmt"
)

// OpenIDToken is an OpenID token a user asked for, to prove their
// identity to a third party, which checks it through federation's
// /openid/userinfo. It grants nothing else.
type OpenIDToken struct {
	Localpart string `json:"localpart"`
	ExpiresTS int64  `json:"expires_ts"` // ms since the epoch
}

// PutOpenIDToken stores an OpenID token by the hash of the token, and
// drops tokens that expired before now (ms): they are few and short-lived,
// so issuing one sweeps the rest.
func (tx *Tx) PutOpenIDToken(hash []byte, t *OpenIDToken, now int64) error {
	b := tx.btx.Bucket(bucketOpenID)
	var expired [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var old OpenIDToken
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("store: decode OpenID token: %w", err)
		}
		if old.ExpiresTS <= now {
			expired = append(expired, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return tx.putJSON(bucketOpenID, hash, t)
}

// OpenIDTokenByHash returns the OpenID token with the hash, expired or
// not, or ErrNotFound.
func (tx *Tx) OpenIDTokenByHash(hash []byte) (*OpenIDToken, error) {
	var t OpenIDToken
	if err := tx.getJSON(bucketOpenID, hash, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
