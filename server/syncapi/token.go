package syncapi

import (
	"strconv"
	"strings"

	"hearth/server/mxerr"
)

// Token is a sync token. Its text is "s<pos>": everything the client has
// been sent up to global stream position pos (events, state, memberships;
// later to-device messages, receipts and account data share the same
// position). Streams kept only in memory (typing) will add "_<n>" parts;
// parsing ignores parts it does not know, so old tokens stay valid.
type Token struct {
	Pos uint64
}

// String returns the token's text.
func (t Token) String() string { return "s" + strconv.FormatUint(t.Pos, 10) }

// ParseToken reads a token; latest is the newest position there is, and a
// token from beyond it (the future, or another server's data directory) is
// refused, as is garbage: 400 M_INVALID_PARAM.
func ParseToken(s string, latest uint64) (Token, error) {
	first, _, _ := strings.Cut(s, "_")
	pos, err := strconv.ParseUint(strings.TrimPrefix(first, "s"), 10, 64)
	if !strings.HasPrefix(first, "s") || err != nil {
		return Token{}, mxerr.InvalidParam("Invalid sync token")
	}
	if pos > latest {
		return Token{}, mxerr.InvalidParam("Sync token is from the future")
	}
	return Token{Pos: pos}, nil
}
