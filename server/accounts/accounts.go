// Package accounts owns local users, their devices and tokens,
// registration, login, and User-Interactive Authentication.
package accounts

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"hearth/server/mxerr"
	"hearth/store"
)

// Config is what accounts needs to know of the server's settings.
type Config struct {
	ServerName       string
	OpenRegistration bool // m.login.dummy registration for anyone
	// AccessTokenLifetime is how long a refreshable access token lives.
	// Tokens of clients that do not ask for refresh never expire.
	AccessTokenLifetime time.Duration
	Argon2              Argon2Params
}

// Service holds the account operations of one server.
type Service struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	uia   *uiaSessions
	now   func() time.Time

	// OnDevicesChanged, when set, is called after devices of a user were
	// deleted or renamed (the store records that as a device-list
	// change), so that the syncs of those who encrypt for them are woken
	// and other servers told.
	OnDevicesChanged func(localpart string)
}

// New returns the account service over st.
func New(cfg Config, st *store.Store, log *slog.Logger) *Service {
	if cfg.AccessTokenLifetime == 0 {
		cfg.AccessTokenLifetime = 10 * time.Minute
	}
	if cfg.Argon2.Time == 0 {
		cfg.Argon2 = DefaultArgon2
	}
	return &Service{cfg: cfg, store: st, log: log, uia: newUIASessions(), now: time.Now}
}

// ServerName returns the name user IDs end in.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// OpenRegistration reports whether anyone may register.
func (s *Service) OpenRegistration() bool { return s.cfg.OpenRegistration }

// UserID returns the full user ID of a local localpart.
func (s *Service) UserID(localpart string) string {
	return "@" + localpart + ":" + s.cfg.ServerName
}

// LocalpartOf returns the localpart of a user ID on this server, or false
// when the ID is malformed or belongs to another server.
func (s *Service) LocalpartOf(userID string) (string, bool) {
	rest, ok := strings.CutPrefix(userID, "@")
	if !ok {
		return "", false
	}
	lp, server, ok := strings.Cut(rest, ":")
	if !ok || server != s.cfg.ServerName || lp == "" {
		return "", false
	}
	return lp, true
}

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

var localpartRE = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)
var numericRE = regexp.MustCompile(`^[0-9]+$`)

// ValidateNewLocalpart checks a localpart someone wants to register, after
// lowercasing, with the spec's grammar and Synapse's reservations.
func (s *Service) ValidateNewLocalpart(lp string) error {
	switch {
	case lp == "":
		return mxerr.InvalidUsername("User ID cannot be empty")
	case !localpartRE.MatchString(lp):
		return mxerr.InvalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
	case strings.HasPrefix(lp, "_"):
		return mxerr.InvalidUsername("User ID may not begin with _")
	case numericRE.MatchString(lp):
		return mxerr.InvalidUsername("Numeric user IDs are reserved for generated accounts")
	case len(s.UserID(lp)) > 255:
		return mxerr.InvalidUsername("User ID is longer than 255 characters")
	}
	return nil
}

// Available reports whether a localpart may be registered: nil, or the
// spec's M_INVALID_USERNAME / M_USER_IN_USE.
func (s *Service) Available(lp string) error {
	if err := s.ValidateNewLocalpart(lp); err != nil {
		return err
	}
	return s.store.View(func(tx *store.Tx) error {
		_, err := tx.User(lp)
		if err == nil {
			return mxerr.UserInUse()
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

const maxPasswordLen = 512

// ValidatePassword refuses passwords over the length limit.
func ValidatePassword(pw string) error {
	if len(pw) > maxPasswordLen {
		return mxerr.InvalidParam("Password is longer than %d bytes", maxPasswordLen)
	}
	return nil
}

// Login is the answer to a successful login or registration.
type Login struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token,omitempty"`
	DeviceID     string `json:"device_id,omitempty"`
	HomeServer   string `json:"home_server,omitempty"` // deprecated by the spec, still read by old clients
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
}

// NewUser describes an account to create.
type NewUser struct {
	Localpart string
	Password  string // "" for an account without password login
	Admin     bool
	// RegToken, when set, is consumed in the same transaction; an account
	// registered with the bootstrap token becomes an admin.
	RegToken string
}

// DeviceRequest describes the device a login or registration creates.
type DeviceRequest struct {
	DeviceID    string // "" to generate one; an existing ID gets new tokens
	DisplayName string
	Refresh     bool // the client asked for a refresh token
	IP          string
}

// CreateUser creates an account and, unless dev is nil, logs it in. The
// localpart must already be validated; a taken one is M_USER_IN_USE.
func (s *Service) CreateUser(u NewUser, dev *DeviceRequest) (*Login, error) {
	if err := ValidatePassword(u.Password); err != nil {
		return nil, err
	}
	var hash string
	if u.Password != "" {
		var err error
		if hash, err = HashPassword(u.Password, s.cfg.Argon2); err != nil {
			return nil, err
		}
	}
	var tok tokens
	if dev != nil {
		tok = s.newTokens(dev.Refresh)
	}
	var login *Login
	var admin bool
	err := s.store.Update(func(tx *store.Tx) error {
		login = nil
		admin = u.Admin
		if u.RegToken != "" {
			rt, err := tx.RegToken(u.RegToken)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !rt.Usable(s.nowMS())) {
				return mxerr.Forbidden("Registration token is no longer valid")
			}
			if err != nil {
				return err
			}
			rt.Completed++
			admin = admin || rt.Bootstrap
			if err := tx.PutRegToken(rt); err != nil {
				return err
			}
		}
		err := tx.CreateUser(&store.User{
			Localpart: u.Localpart, PasswordHash: hash, Admin: admin,
			CreatedTS: s.nowMS(), DisplayName: u.Localpart,
		})
		if errors.Is(err, store.ErrExists) {
			return mxerr.UserInUse()
		}
		if err != nil {
			return err
		}
		login = &Login{UserID: s.UserID(u.Localpart)}
		if dev != nil {
			return s.putDevice(tx, u.Localpart, dev, tok, login)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("account created", "user", login.UserID, "admin", admin)
	return login, nil
}

// tokens is a fresh set of tokens for one device, made outside the write
// transaction so that retries of the transaction reuse them.
type tokens struct {
	access, refresh string
}

func (s *Service) newTokens(refresh bool) tokens {
	t := tokens{access: newToken("hat_")}
	if refresh {
		t.refresh = newToken("hrt_")
	}
	return t
}

// putDevice creates the device (or reuses one with the same ID) and gives
// it tok, filling login.
func (s *Service) putDevice(tx *store.Tx, lp string, dev *DeviceRequest, tok tokens, login *Login) error {
	id := dev.DeviceID
	if id == "" {
		id = newDeviceID()
	}
	d, err := tx.Device(lp, id)
	if errors.Is(err, store.ErrNotFound) {
		d = &store.Device{Localpart: lp, ID: id, DisplayName: dev.DisplayName, CreatedTS: s.nowMS()}
	} else if err != nil {
		return err
	}
	d.LastSeenTS, d.LastSeenIP = s.nowMS(), dev.IP
	if err := tx.PutDevice(d); err != nil {
		return err
	}
	var expires int64
	var refreshHash []byte
	if tok.refresh != "" {
		expires = s.now().Add(s.cfg.AccessTokenLifetime).UnixMilli()
		refreshHash = hashToken(tok.refresh)
		login.RefreshToken = tok.refresh
		login.ExpiresInMS = s.cfg.AccessTokenLifetime.Milliseconds()
	}
	login.AccessToken, login.DeviceID, login.HomeServer = tok.access, id, s.cfg.ServerName
	return tx.SetDeviceTokens(lp, id, hashToken(tok.access), expires, refreshHash)
}

// CheckPassword verifies a user's password: the account, or
// M_FORBIDDEN for a wrong user or password, M_USER_DEACTIVATED for a
// deactivated account.
func (s *Service) CheckPassword(lp, password string) (*store.User, error) {
	var u *store.User
	err := s.store.View(func(tx *store.Tx) (err error) {
		u, err = tx.User(lp)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a real check would, so response times do not
		// tell which accounts exist.
		_, _ = HashPassword(password, s.cfg.Argon2)
		return nil, mxerr.Forbidden("Invalid username or password")
	}
	if err != nil {
		return nil, err
	}
	if u.Deactivated {
		return nil, mxerr.UserDeactivated()
	}
	if u.PasswordHash == "" {
		return nil, mxerr.Forbidden("Invalid username or password")
	}
	ok, err := VerifyPassword(password, u.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("verify password of %s: %w", lp, err)
	}
	if !ok {
		return nil, mxerr.Forbidden("Invalid username or password")
	}
	return u, nil
}

// LoginPassword logs lp in with a password and creates or refreshes the
// device.
func (s *Service) LoginPassword(lp, password string, dev *DeviceRequest) (*Login, error) {
	if _, err := s.CheckPassword(lp, password); err != nil {
		return nil, err
	}
	tok := s.newTokens(dev.Refresh)
	login := &Login{UserID: s.UserID(lp)}
	err := s.store.Update(func(tx *store.Tx) error {
		return s.putDevice(tx, lp, dev, tok, login)
	})
	if err != nil {
		return nil, err
	}
	return login, nil
}

// Refreshed is the answer to POST /refresh.
type Refreshed struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresInMS  int64  `json:"expires_in_ms"`
}

// Refresh trades a refresh token for a new access and refresh token. The
// old access token stops working at once; the old refresh token stays
// valid until the new pair is first used (spec: "Refreshing access
// tokens"), so a client that lost this response can refresh again.
func (s *Service) Refresh(refreshToken string) (*Refreshed, error) {
	tok := s.newTokens(true)
	expires := s.now().Add(s.cfg.AccessTokenLifetime)
	err := s.store.Update(func(tx *store.Tx) error {
		sess, err := tx.SessionByRefresh(hashToken(refreshToken))
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.UnknownToken(false)
		}
		if err != nil {
			return err
		}
		err = tx.RotateDeviceTokens(sess.Localpart, sess.DeviceID, hashToken(refreshToken),
			hashToken(tok.access), expires.UnixMilli(), hashToken(tok.refresh))
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.UnknownToken(false)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Refreshed{AccessToken: tok.access, RefreshToken: tok.refresh, ExpiresInMS: s.cfg.AccessTokenLifetime.Milliseconds()}, nil
}

// Caller is who an access token belongs to.
type Caller struct {
	Localpart string
	DeviceID  string
	Admin     bool
	Expired   bool
}

// lastSeenEvery is how stale a device's last-seen record may get before a
// request refreshes it; it bounds the writes authentication causes.
const lastSeenEvery = 5 * time.Minute

// Authenticate resolves an access token: M_UNKNOWN_TOKEN when unknown, and
// with soft_logout when expired unless allowExpired.
func (s *Service) Authenticate(token, ip string, allowExpired bool) (*Caller, error) {
	var c *Caller
	var stale, hasPrev bool
	now := s.nowMS()
	err := s.store.View(func(tx *store.Tx) error {
		a, err := tx.AccessByHash(hashToken(token))
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.UnknownToken(false)
		}
		if err != nil {
			return err
		}
		expired := a.ExpiresTS != 0 && now >= a.ExpiresTS
		if expired && !allowExpired {
			return mxerr.UnknownToken(true)
		}
		stale = now-a.LastSeenTS > lastSeenEvery.Milliseconds() || a.LastSeenIP != ip
		hasPrev = a.PrevRefresh
		c = &Caller{Localpart: a.Localpart, DeviceID: a.DeviceID, Admin: a.Admin, Expired: expired}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if hasPrev {
		// First use of a refreshed access token: the refresh token it was
		// made from may no longer be used for a retry.
		if err := s.store.Update(func(tx *store.Tx) error { return tx.DropPrevRefresh(c.Localpart, c.DeviceID) }); err != nil {
			return nil, err
		}
	}
	if stale {
		go s.touchDevice(c.Localpart, c.DeviceID, ip, now) // best effort, off the request path
	}
	return c, nil
}

func (s *Service) touchDevice(lp, id, ip string, now int64) {
	err := s.store.Update(func(tx *store.Tx) error {
		d, err := tx.Device(lp, id)
		if err != nil {
			return err
		}
		d.LastSeenTS, d.LastSeenIP = now, ip
		return tx.PutDevice(d)
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrClosed) {
		s.log.Warn("record device last seen", "user", lp, "device", id, "err", err)
	}
}

// Logout deletes one device and its tokens.
func (s *Service) Logout(lp, deviceID string) error {
	return s.DeleteDevices(lp, []string{deviceID})
}

// LogoutAll deletes every device of a user except keep ("" for none).
func (s *Service) LogoutAll(lp, keep string) error {
	err := s.store.Update(func(tx *store.Tx) error { return tx.DeleteAllDevices(lp, keep) })
	s.devicesChanged(lp, err)
	return err
}

// devicesChanged tells OnDevicesChanged about a change that committed.
func (s *Service) devicesChanged(lp string, err error) {
	if err == nil && s.OnDevicesChanged != nil {
		s.OnDevicesChanged(lp)
	}
}

// SetPassword replaces a user's password; with logoutOthers every device
// but keep is deleted in the same transaction.
func (s *Service) SetPassword(lp, password string, logoutOthers bool, keep string) error {
	if password == "" {
		return mxerr.MissingParam("Missing new password")
	}
	if err := ValidatePassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password, s.cfg.Argon2)
	if err != nil {
		return err
	}
	err = s.store.Update(func(tx *store.Tx) error {
		u, err := tx.User(lp)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if logoutOthers {
			return tx.DeleteAllDevices(lp, keep)
		}
		return nil
	})
	if logoutOthers {
		s.devicesChanged(lp, err)
	}
	return err
}

// Deactivate closes an account for good: no password, no devices; with
// erase the profile is cleared too. The localpart stays taken.
func (s *Service) Deactivate(lp string, erase bool) error {
	err := s.store.Update(func(tx *store.Tx) error {
		u, err := tx.User(lp)
		if err != nil {
			return err
		}
		u.Deactivated, u.PasswordHash = true, ""
		if erase {
			u.DisplayName, u.AvatarURL = "", ""
		}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		return tx.DeleteAllDevices(lp, "")
	})
	s.devicesChanged(lp, err)
	if err == nil {
		s.log.Info("account deactivated", "user", s.UserID(lp), "erase", erase)
	}
	return err
}

// Devices lists a user's devices.
func (s *Service) Devices(lp string) ([]store.Device, error) {
	var out []store.Device
	err := s.store.View(func(tx *store.Tx) (err error) {
		out, err = tx.Devices(lp)
		return err
	})
	return out, err
}

// Device returns one device, or M_NOT_FOUND.
func (s *Service) Device(lp, id string) (*store.Device, error) {
	var d *store.Device
	err := s.store.View(func(tx *store.Tx) (err error) {
		d, err = tx.Device(lp, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("Unknown device")
	}
	return d, err
}

// RenameDevice sets a device's display name, or M_NOT_FOUND. A new name
// is a device-list change: those who encrypt for the device see its name
// in their key queries, on this server and others.
func (s *Service) RenameDevice(lp, id, name string) error {
	renamed := false
	err := s.store.Update(func(tx *store.Tx) error {
		renamed = false
		d, err := tx.Device(lp, id)
		if err != nil || d.DisplayName == name {
			return err
		}
		d.DisplayName, renamed = name, true
		if err := tx.PutDevice(d); err != nil {
			return err
		}
		_, err = tx.RecordDeviceListChange(s.UserID(lp))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Unknown device")
	}
	if renamed {
		s.devicesChanged(lp, err)
	}
	return err
}

// DeleteDevices deletes devices and revokes their tokens in one
// transaction. Device IDs the user does not have are skipped, as Synapse
// does, so that a retried request succeeds.
func (s *Service) DeleteDevices(lp string, ids []string) error {
	err := s.store.Update(func(tx *store.Tx) error {
		for _, id := range ids {
			if err := tx.DeleteDevice(lp, id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	s.devicesChanged(lp, err)
	return err
}

// User returns a local account, or M_NOT_FOUND.
func (s *Service) User(lp string) (*store.User, error) {
	var u *store.User
	err := s.store.View(func(tx *store.Tx) (err error) {
		u, err = tx.User(lp)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("User not found")
	}
	return u, err
}

// Users lists every local account.
func (s *Service) Users() ([]store.User, error) {
	var out []store.User
	err := s.store.View(func(tx *store.Tx) (err error) {
		out, err = tx.Users()
		return err
	})
	return out, err
}

// UpdateProfile applies fn to a local user's profile fields.
func (s *Service) UpdateProfile(lp string, fn func(u *store.User)) error {
	err := s.store.Update(func(tx *store.Tx) error {
		u, err := tx.User(lp)
		if err != nil {
			return err
		}
		fn(u)
		return tx.PutUser(u)
	})
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("User not found")
	}
	return err
}
