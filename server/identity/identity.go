// Package identity is the homeserver's client of the Identity Service API
// (v2): the 3PID lookups and invitation storage third-party invites need,
// and the validity checks of an identity server's keys. Identity servers
// are named by users, so every request goes through netguard: private
// and loopback addresses are refused unless the operator allows them.
//
// Each method returns a Matrix error a client may be shown: the identity
// server's own error (its status and errcode, for a 4xx), 400
// M_SERVER_NOT_TRUSTED for an address the guard refuses, 502 when it
// cannot be reached or answers nonsense.
package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"hearth/server/mxerr"
	"hearth/server/netguard"
	"hearth/server/pdu"
)

// timeout bounds one request to an identity server, body included.
const timeout = 30 * time.Second

// maxBody bounds an identity server's response: its answers are a few
// hundred bytes.
const maxBody = 64 << 10

// Client talks to identity servers.
type Client struct {
	http *http.Client
}

// New returns a client trusting rootCAs (nil for the system roots) that
// refuses private addresses unless allowPrivate.
func New(allowPrivate bool, rootCAs *x509.CertPool) *Client {
	tr := netguard.NewTransport(allowPrivate, timeout)
	tr.TLSClientConfig = &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12}
	return &Client{http: &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// The API does not redirect; a redirect would carry the user's
		// identity server token somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// baseURL returns the API's base URL on idServer, the "hostname[:port]"
// a client names, refusing anything else (a path, credentials).
func baseURL(idServer string) (string, error) {
	u, err := url.Parse("https://" + idServer)
	if idServer == "" || err != nil || u.Host != idServer || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Hostname() == "" {
		return "", mxerr.InvalidParam("id_server must be a host name with an optional port")
	}
	return "https://" + idServer + "/_matrix/identity/v2", nil
}

// Lookup returns the Matrix user ID bound to the 3PID (medium, address)
// on idServer, or "" when none is: /hash_details, then /lookup with the
// sha256 algorithm (or "none" where sha256 is not offered), token as the
// bearer.
func (c *Client) Lookup(ctx context.Context, idServer, token, medium, address string) (string, error) {
	base, err := baseURL(idServer)
	if err != nil {
		return "", err
	}
	var details struct {
		Pepper     *string  `json:"lookup_pepper"`
		Algorithms []string `json:"algorithms"`
	}
	if err := c.call(ctx, "GET", base+"/hash_details", token, nil, &details); err != nil {
		return "", err
	}
	if details.Pepper == nil {
		return "", badAnswer("hash_details without lookup_pepper")
	}
	req := map[string]any{"pepper": *details.Pepper}
	var query string
	switch {
	case slices.Contains(details.Algorithms, "sha256"):
		sum := sha256.Sum256([]byte(address + " " + medium + " " + *details.Pepper))
		query = base64.RawURLEncoding.EncodeToString(sum[:])
		req["algorithm"] = "sha256"
	case slices.Contains(details.Algorithms, "none"):
		query = address + " " + medium
		req["algorithm"] = "none"
	default:
		return "", badAnswer("no lookup algorithm this server supports")
	}
	req["addresses"] = []string{query}
	var resp struct {
		Mappings map[string]string `json:"mappings"`
	}
	if err := c.call(ctx, "POST", base+"/lookup", token, req, &resp); err != nil {
		return "", err
	}
	mxid := resp.Mappings[query]
	if mxid != "" && !pdu.ValidUserID(mxid) {
		return "", badAnswer("the bound Matrix ID is not a user ID")
	}
	return mxid, nil
}

// Invite is what /store-invite records of an invitation, besides the
// address: the room and inviter, for the message the identity server
// sends. Empty fields are left out.
type Invite struct {
	Medium            string `json:"medium"`
	Address           string `json:"address"`
	RoomID            string `json:"room_id"`
	Sender            string `json:"sender"`
	RoomAlias         string `json:"room_alias,omitempty"`
	RoomAvatarURL     string `json:"room_avatar_url,omitempty"`
	RoomJoinRules     string `json:"room_join_rules,omitempty"`
	RoomName          string `json:"room_name,omitempty"`
	RoomType          string `json:"room_type,omitempty"`
	SenderDisplayName string `json:"sender_display_name,omitempty"`
	SenderAvatarURL   string `json:"sender_avatar_url,omitempty"`
}

// PublicKey is a key of an identity server and where its validity is
// checked.
type PublicKey struct {
	PublicKey      string `json:"public_key"`
	KeyValidityURL string `json:"key_validity_url,omitempty"`
}

// StoredInvite is the identity server's answer to /store-invite: the
// token its signature will cover, its keys (the long-term key first), and
// a display name for the invitee that does not give their address away.
type StoredInvite struct {
	Token       string      `json:"token"`
	PublicKeys  []PublicKey `json:"public_keys"`
	DisplayName string      `json:"display_name"`
	// PublicKey is an older answer's single key.
	PublicKey string `json:"public_key"`
}

// tokenGrammar is the spec's for a store-invite token, which becomes a
// state key.
var tokenGrammar = regexp.MustCompile(`^[0-9a-zA-Z.=_-]{1,255}$`)

// StoreInvite asks idServer to keep inv until its address is bound, with
// token as the bearer.
func (c *Client) StoreInvite(ctx context.Context, idServer, token string, inv *Invite) (*StoredInvite, error) {
	base, err := baseURL(idServer)
	if err != nil {
		return nil, err
	}
	var out StoredInvite
	if err := c.call(ctx, "POST", base+"/store-invite", token, inv, &out); err != nil {
		return nil, err
	}
	if !tokenGrammar.MatchString(out.Token) {
		return nil, badAnswer("store-invite token is not of the spec's grammar")
	}
	if out.PublicKey != "" && len(out.PublicKeys) == 0 {
		// An older identity server: one key, checked where Synapse checks it.
		out.PublicKeys = []PublicKey{{PublicKey: out.PublicKey, KeyValidityURL: base + "/pubkey/isvalid"}}
	}
	if len(out.PublicKeys) == 0 {
		return nil, badAnswer("store-invite without public keys")
	}
	for _, k := range out.PublicKeys {
		if k.PublicKey == "" {
			return nil, badAnswer("store-invite with an empty public key")
		}
	}
	return &out, nil
}

// KeyValid asks an identity server, at validityURL (a key_validity_url
// from a room's m.room.third_party_invite), whether publicKey is still
// valid.
func (c *Client) KeyValid(ctx context.Context, validityURL, publicKey string) (bool, error) {
	u, err := url.Parse(validityURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false, mxerr.Forbidden("The invite's key_validity_url is not an HTTP URL")
	}
	q := u.Query()
	q.Set("public_key", publicKey)
	u.RawQuery = q.Encode()
	var resp struct {
		Valid *bool `json:"valid"`
	}
	if err := c.call(ctx, "GET", u.String(), "", nil, &resp); err != nil {
		return false, err
	}
	if resp.Valid == nil {
		return false, badAnswer("isvalid without valid")
	}
	return *resp.Valid, nil
}

// call sends one request (in as JSON, unless nil), with token as the
// bearer unless "", and decodes a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, u, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return mxerr.InvalidParam("Invalid identity server URL")
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if netguard.IsBlocked(err) {
		return &mxerr.Error{Status: http.StatusBadRequest, Code: "M_SERVER_NOT_TRUSTED",
			Message: "The identity server is on an address this server does not reach"}
	}
	if err != nil {
		return unreachable()
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(netguard.LimitBody(resp.Body, maxBody))
	if err != nil {
		return unreachable()
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return remoteError(resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return badAnswer("not a JSON object of the expected shape")
	}
	return nil
}

// remoteError is the identity server's error as our client sees it: a
// 4xx with its errcode and message (M_TERMS_NOT_SIGNED tells the client
// what to do), anything else as unreachable.
func remoteError(status int, body []byte) error {
	var e struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if status < 400 || status > 499 || json.Unmarshal(body, &e) != nil || !strings.HasPrefix(e.Errcode, "M_") {
		return unreachable()
	}
	msg := "Identity server: " + e.Error
	if e.Error == "" {
		msg = fmt.Sprintf("The identity server refused the request (%s)", e.Errcode)
	}
	if status == http.StatusUnauthorized {
		// A 401 from us would tell the client its access token here is
		// bad; it is the one for the identity server that is.
		status = http.StatusForbidden
	}
	return &mxerr.Error{Status: status, Code: e.Errcode, Message: msg}
}

func unreachable() error {
	return &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "The identity server could not be reached"}
}

func badAnswer(what string) error {
	return &mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "The identity server gave a bad answer: " + what}
}
