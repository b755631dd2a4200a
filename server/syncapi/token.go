package syncapi

import (
	"strconv"
	"strings"

	"hearth/server/mxerr"
)

// Token is a sync token. Its text is "s<pos>_<typing>_<presence>":
// everything the client has been sent up to global stream position pos
// (events, state, memberships, account data, receipts, to-device
// messages: every durable stream shares the one position), and typing and
// presence up to their in-memory serials. Missing parts count as 0 and
// parts after these are ignored, so streams can be added.
type Token struct {
	Pos      uint64
	Typing   uint64
	Presence uint64
}

// String returns the token's text.
func (t Token) String() string {
	return "s" + strconv.FormatUint(t.Pos, 10) + "_" + strconv.FormatUint(t.Typing, 10) + "_" + strconv.FormatUint(t.Presence, 10)
}

// ParseToken reads a token; latest is the newest position there is, and a
// token from beyond it (the future, or another server's data directory) is
// refused, as is garbage: 400 M_INVALID_PARAM. A typing serial from before
// a restart is harmless: typing state is in memory and starts empty.
func ParseToken(s string, latest uint64) (Token, error) {
	parts := strings.Split(s, "_")
	pos, err := strconv.ParseUint(strings.TrimPrefix(parts[0], "s"), 10, 64)
	if !strings.HasPrefix(parts[0], "s") || err != nil {
		return Token{}, mxerr.InvalidParam("Invalid sync token")
	}
	if pos > latest {
		return Token{}, mxerr.InvalidParam("Sync token is from the future")
	}
	t := Token{Pos: pos}
	for i, into := range []*uint64{&t.Typing, &t.Presence} {
		if len(parts) > i+1 {
			if *into, err = strconv.ParseUint(parts[i+1], 10, 64); err != nil {
				return Token{}, mxerr.InvalidParam("Invalid sync token")
			}
		}
	}
	return t, nil
}
