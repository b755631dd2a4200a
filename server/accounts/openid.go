package accounts

import (
	"errors"
	"time"

	"hearth/server/mxerr"
	"hearth/store"
)

// OpenIDLifetime is how long an OpenID token is good for: the hour
// Synapse gives.
const OpenIDLifetime = time.Hour

// IssueOpenIDToken returns a new OpenID token for a local user, good for
// OpenIDLifetime. Only its hash is stored.
func (s *Service) IssueOpenIDToken(localpart string) (string, error) {
	token := newToken("oid_")
	now := s.now()
	t := &store.OpenIDToken{Localpart: localpart, ExpiresTS: now.Add(OpenIDLifetime).UnixMilli()}
	err := s.store.Update(func(tx *store.Tx) error {
		return tx.PutOpenIDToken(hashToken(token), t, now.UnixMilli())
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// OpenIDUser returns the user ID an OpenID token was issued to; an
// unknown or expired token, or one of a deactivated account, is 401
// M_UNKNOWN_TOKEN.
func (s *Service) OpenIDUser(token string) (string, error) {
	var userID string
	err := s.store.View(func(tx *store.Tx) error {
		t, err := tx.OpenIDTokenByHash(hashToken(token))
		if errors.Is(err, store.ErrNotFound) || (err == nil && t.ExpiresTS <= s.nowMS()) {
			return mxerr.UnknownToken(false)
		}
		if err != nil {
			return err
		}
		u, err := tx.User(t.Localpart)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.Deactivated) {
			return mxerr.UnknownToken(false)
		}
		if err != nil {
			return err
		}
		userID = s.UserID(t.Localpart)
		return nil
	})
	return userID, err
}
