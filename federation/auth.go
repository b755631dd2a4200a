package federation

import (
	"strings"
	"time"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/server/pdu"
)

// xMatrix is a parsed "Authorization: X-Matrix ..." header.
type xMatrix struct {
	origin, destination, key, sig string
}

// parseXMatrix parses an X-Matrix Authorization header: comma-separated
// name=value pairs, values optionally double-quoted with backslash
// escapes (RFC 9110 auth-param). It reports false for another scheme or
// a header missing origin, key or sig.
func parseXMatrix(h string) (xMatrix, bool) {
	var x xMatrix
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "X-Matrix") {
		return x, false
	}
	for rest = strings.TrimSpace(rest); rest != ""; {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return x, false
		}
		name = strings.ToLower(strings.TrimSpace(name))
		after = strings.TrimLeft(after, " \t")
		var value string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			if i >= len(after) {
				return x, false // unterminated quote
			}
			value, after = b.String(), after[i+1:]
		} else {
			end := strings.IndexByte(after, ',')
			if end < 0 {
				end = len(after)
			}
			value, after = strings.TrimSpace(after[:end]), after[end:]
		}
		switch name {
		case "origin":
			x.origin = value
		case "destination":
			x.destination = value
		case "key":
			x.key = value
		case "sig":
			x.sig = value
		}
		after = strings.TrimLeft(after, " \t")
		if after != "" && after[0] != ',' {
			return x, false
		}
		rest = strings.TrimLeft(strings.TrimPrefix(after, ","), " \t")
	}
	return x, x.origin != "" && x.key != "" && x.sig != ""
}

// Authenticate verifies the X-Matrix signature of a federation request
// (an httpx.ServerAuthenticator) and returns the origin server. A missing
// destination is taken to be us; another server's is refused, so that a
// request signed for one server cannot be replayed to another.
func (s *Service) Authenticate(r *httpx.Request) (string, error) {
	x, ok := parseXMatrix(r.Header("Authorization"))
	if !ok {
		return "", mxerr.Unauthorized("Missing or malformed X-Matrix Authorization header")
	}
	dest := x.destination
	if dest == "" {
		dest = s.cfg.ServerName
	} else if dest != s.cfg.ServerName {
		r.Log.Info("federation request for another destination", "origin", x.origin, "destination", dest)
		return "", mxerr.Unauthorized("Request is for destination %q, not this server", dest)
	}
	pub, err := s.keys.PublicKey(r.Context(), x.origin, x.key, time.Now().UnixMilli())
	if err != nil {
		r.Log.Info("federation request: no key", "origin", x.origin, "key", x.key, "err", err)
		return "", mxerr.Unauthorized("Could not find a valid key %s of %s", x.key, x.origin)
	}
	if err := pdu.VerifyRequest(pub, x.sig, r.Method(), r.RequestURI(), x.origin, dest, r.Body()); err != nil {
		r.Log.Info("federation request: bad signature", "origin", x.origin, "key", x.key)
		return "", mxerr.Unauthorized("Invalid X-Matrix signature")
	}
	return x.origin, nil
}
