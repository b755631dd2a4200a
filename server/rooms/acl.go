package rooms

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"

	"hearth/server/mxerr"
	"hearth/store"
)

// serverACL is the content of m.room.server_acl (Client-Server API,
// "Server Access Control Lists").
type serverACL struct {
	Allow           []string `json:"allow"`
	Deny            []string `json:"deny"`
	AllowIPLiterals *bool    `json:"allow_ip_literals"`
}

// aclAllows reports whether the room's server ACL lets server take part:
// send it events and EDUs, join, read its history. Without an ACL every
// server may. Our own server is never shut out of a room by an ACL here.
func (s *Service) aclAllows(tx *store.Tx, room *store.Room, server string) bool {
	if server == s.serverName {
		return true
	}
	ev, err := s.stateEvent(tx, room, "m.room.server_acl", "")
	if err != nil {
		return true
	}
	var acl serverACL
	if json.Unmarshal(ev.Content(), &acl) != nil {
		return true
	}
	host := server
	if h, _, err := net.SplitHostPort(server); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if (acl.AllowIPLiterals != nil && !*acl.AllowIPLiterals) && net.ParseIP(host) != nil {
		return false
	}
	for _, g := range acl.Deny {
		if globMatch(g, host) {
			return false
		}
	}
	for _, g := range acl.Allow {
		if globMatch(g, host) {
			return true
		}
	}
	return false
}

// globMatch matches a server name against an ACL glob: * is any run of
// characters, ? any one; case is ignored, as server names' is.
func globMatch(glob, name string) bool {
	var re strings.Builder
	re.WriteString("(?is)^")
	for _, r := range glob {
		switch r {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	re.WriteString("$")
	m, err := regexp.MatchString(re.String(), name)
	return err == nil && m
}

// checkACL is M_FORBIDDEN when the room's server ACL shuts server out.
func (s *Service) checkACL(tx *store.Tx, room *store.Room, server string) error {
	if !s.aclAllows(tx, room, server) {
		return mxerr.Forbidden("Server %s is denied by the room's server ACL", server)
	}
	return nil
}

// ServerAllowed reports whether a room's server ACL lets server take
// part in it (true for a room we do not know).
func (s *Service) ServerAllowed(roomID, server string) bool {
	ok := true
	_ = s.store.View(func(tx *store.Tx) error {
		room, err := tx.RoomByID(roomID)
		if err == nil {
			ok = s.aclAllows(tx, room, server)
		}
		return nil
	})
	return ok
}
