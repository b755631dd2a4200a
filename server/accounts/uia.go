package accounts

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"hearth/server/mxerr"
	"hearth/store"
)

// Stage names of User-Interactive Authentication.
const (
	StageDummy    = "m.login.dummy"
	StagePassword = "m.login.password"
	StageRegToken = "m.login.registration_token"
)

// Flow is one way through UIA: its stages, in order.
type Flow struct {
	Stages []string `json:"stages"`
}

// Identifier is the spec's user identifier (only m.id.user is supported).
type Identifier struct {
	Type string `json:"type"`
	User string `json:"user"`
}

// AuthDict is the "auth" object of a UIA request.
type AuthDict struct {
	Type       string      `json:"type"`
	Session    string      `json:"session"`
	Identifier *Identifier `json:"identifier"`
	User       string      `json:"user"` // legacy form of identifier
	Password   string      `json:"password"`
	Token      string      `json:"token"`
}

// UIADone is what a completed UIA session proved.
type UIADone struct {
	RegToken string // the registration token accepted, if that stage ran
}

// errOtherUser means m.login.password named someone other than the user
// the request acts for.
var errOtherUser = errors.New("accounts: UIA names another user")

type uiaSession struct {
	// mu guards completed and regToken: a client may send several
	// requests of one session at once (a double submit).
	mu        sync.Mutex
	id        string
	bind      string // the request (route, parameters, user) the session was started for
	completed []string
	regToken  string
	created   time.Time
	done      bool // completed: a request queued behind the one that completed it must not complete it again
}

// uiaSessions are kept in memory: they live for minutes, and a client whose
// session is lost to a restart simply starts a new one.
type uiaSessions struct {
	mu sync.Mutex // guards m
	m  map[string]*uiaSession
}

const uiaLifetime = 30 * time.Minute

func newUIASessions() *uiaSessions { return &uiaSessions{m: map[string]*uiaSession{}} }

func (u *uiaSessions) get(id, bind string, now time.Time) (*uiaSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, s := range u.m {
		if now.Sub(s.created) > uiaLifetime {
			delete(u.m, k)
		}
	}
	if id == "" {
		s := &uiaSession{id: newToken("")[:24], bind: bind, created: now}
		u.m[s.id] = s
		return s, nil
	}
	s := u.m[id]
	if s == nil {
		return nil, mxerr.Unknown("Unknown UIA session")
	}
	if s.bind != bind {
		return nil, mxerr.Forbidden("Requested operation has changed during the UI authentication session")
	}
	return s, nil
}

func (u *uiaSessions) drop(id string) {
	u.mu.Lock()
	delete(u.m, id)
	u.mu.Unlock()
}

// UIA runs one round of User-Interactive Authentication for a request.
// bind names the request (method, path and caller) so that a session
// cannot be reused for another; lp is the local user who must prove their
// password for m.login.password ("" for registration). It returns what
// the session proved once a flow is complete, and otherwise the spec's 401
// with flows, params, session and completed stages (with errcode when a
// stage just failed).
func (s *Service) UIA(bind string, flows []Flow, auth *AuthDict, lp string) (*UIADone, error) {
	var sessID string
	if auth != nil {
		sessID = auth.Session
	}
	sess, err := s.uia.get(sessID, bind, s.now())
	if err != nil {
		return nil, err
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.done {
		return nil, mxerr.Unknown("Unknown UIA session")
	}
	if auth != nil && auth.Type != "" {
		if !slices.ContainsFunc(flows, func(f Flow) bool { return slices.Contains(f.Stages, auth.Type) }) {
			return nil, s.challenge(sess, flows, mxerr.Unknown("Authentication type %q is not offered", auth.Type))
		}
		if err := s.runStage(sess, auth, lp); err != nil {
			if errors.Is(err, errOtherUser) {
				// Synapse's answer: a plain 403, not another challenge.
				return nil, mxerr.Forbidden("Invalid auth: not the requesting user")
			}
			if e, ok := mxerr.As(err); ok {
				return nil, s.challenge(sess, flows, e)
			}
			return nil, err
		}
		if !slices.Contains(sess.completed, auth.Type) {
			sess.completed = append(sess.completed, auth.Type)
		}
	}
	for _, f := range flows {
		if !slices.ContainsFunc(f.Stages, func(st string) bool { return !slices.Contains(sess.completed, st) }) {
			sess.done = true
			s.uia.drop(sess.id)
			return &UIADone{RegToken: sess.regToken}, nil
		}
	}
	return nil, s.challenge(sess, flows, nil)
}

func (s *Service) runStage(sess *uiaSession, auth *AuthDict, lp string) error {
	switch auth.Type {
	case StageDummy:
		return nil
	case StagePassword:
		who := auth.User
		if auth.Identifier != nil {
			if auth.Identifier.Type != "m.id.user" {
				return mxerr.Unknown("Only m.id.user identifiers are supported")
			}
			who = auth.Identifier.User
		}
		got, ok := s.ParseLoginUser(who)
		if !ok {
			return mxerr.Forbidden("Invalid username or password")
		}
		if got != lp {
			return errOtherUser
		}
		_, err := s.CheckPassword(lp, auth.Password)
		return err
	case StageRegToken:
		usable, err := s.RegTokenValid(auth.Token)
		if err != nil {
			return err
		}
		if !usable {
			return &mxerr.Error{Status: http.StatusUnauthorized, Code: "M_UNAUTHORIZED", Message: "Invalid registration token"}
		}
		sess.regToken = auth.Token
		return nil
	}
	return mxerr.Unknown("Unsupported authentication type %q", auth.Type)
}

func (s *Service) challenge(sess *uiaSession, flows []Flow, failed *mxerr.Error) *mxerr.Error {
	e := &mxerr.Error{Status: http.StatusUnauthorized}
	if failed != nil {
		e.Code, e.Message = failed.Code, failed.Message
	}
	completed := sess.completed
	if completed == nil {
		completed = []string{}
	}
	return e.With("flows", flows).With("params", map[string]any{}).
		With("session", sess.id).With("completed", completed)
}

// ParseLoginUser turns what a client typed as its user (a localpart or a
// full user ID on this server, in any case) into a localpart.
func (s *Service) ParseLoginUser(who string) (string, bool) {
	who = strings.ToLower(strings.TrimSpace(who))
	if strings.HasPrefix(who, "@") {
		lp, ok := s.LocalpartOf(who)
		if !ok {
			// Server names may be mixed-case in a typed ID; compare folded.
			rest := who[1:]
			l, server, found := strings.Cut(rest, ":")
			if !found || server != strings.ToLower(s.cfg.ServerName) {
				return "", false
			}
			lp = l
		}
		return lp, lp != ""
	}
	return who, who != ""
}

// RegTokenValid reports whether a registration token can be used now.
func (s *Service) RegTokenValid(token string) (bool, error) {
	var usable bool
	err := s.store.View(func(tx *store.Tx) error {
		t, err := tx.RegToken(token)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		usable = err == nil && t.Usable(s.nowMS())
		return err
	})
	return usable, err
}
