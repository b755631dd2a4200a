package store

import (
	"encoding/json"
	"fmt"
)

// RegToken is a registration token (m.login.registration_token), with the
// fields of Synapse's admin API.
type RegToken struct {
	Token       string `json:"token"`
	UsesAllowed *int   `json:"uses_allowed"` // nil: unlimited
	Completed   int    `json:"completed"`    // registrations it was used for
	ExpiryTS    int64  `json:"expiry_time,omitempty"`
	// Bootstrap marks the one-time token printed on first start; the
	// account registered with it becomes an admin.
	Bootstrap bool `json:"bootstrap,omitempty"`
}

// Usable reports whether t may be used for another registration at time
// now (ms). Uses are counted when a registration commits, not when the UIA
// stage passes, so an abandoned session never holds a use.
func (t *RegToken) Usable(now int64) bool {
	if t.ExpiryTS != 0 && now >= t.ExpiryTS {
		return false
	}
	return t.UsesAllowed == nil || t.Completed < *t.UsesAllowed
}

// RegToken returns a registration token, or ErrNotFound.
func (tx *Tx) RegToken(token string) (*RegToken, error) {
	var t RegToken
	if err := tx.getJSON(bucketRegTokens, []byte(token), &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PutRegToken creates or overwrites a registration token.
func (tx *Tx) PutRegToken(t *RegToken) error {
	return tx.putJSON(bucketRegTokens, []byte(t.Token), t)
}

// RegTokens returns every registration token.
func (tx *Tx) RegTokens() ([]RegToken, error) {
	var out []RegToken
	err := tx.btx.Bucket(bucketRegTokens).ForEach(func(k, v []byte) error {
		var t RegToken
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("store: decode registration token: %w", err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}
