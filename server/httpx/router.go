package httpx

import (
	"fmt"
	"net/url"
	"strings"
)

// Auth says what a route needs from the caller's access token.
type Auth int

const (
	// NoAuth routes ignore access tokens.
	NoAuth Auth = iota
	// UserAuth routes need a valid, unexpired access token.
	UserAuth
	// ExpiredOK routes need a known access token, expired or not (logout).
	ExpiredOK
	// OptionalAuth routes use a valid token when one is sent.
	OptionalAuth
	// ServerAuth routes are federation requests: they need a valid X-Matrix
	// signature, checked by the server's ServerAuthenticator, and the
	// verified server name is in Request.Origin.
	ServerAuth
)

// Route is one line of a route table: a method and path pattern, what it
// needs and what serves it. Patterns are "/"-separated; a segment {name}
// matches one raw segment (possibly empty), percent-decoded into Param(name).
type Route struct {
	Method  string
	Path    string
	Auth    Auth
	Handler Handler
	// Limit, when set, rate-limits the route per client IP.
	Limit *Limiter
	// MaxBody overrides DefaultMaxBody for this route.
	MaxBody int
	// StreamBody leaves the body unread for the handler to stream through
	// Request.BodyReader (uploads); Body is then empty.
	StreamBody bool
}

// node is a segment trie: static children are preferred to a parameter.
type node struct {
	static    map[string]*node
	param     *node
	paramName string
	methods   map[string]*Route
}

// Mux holds the route tables of one listener.
type Mux struct {
	root node
}

// Handle adds routes under prefix. A route path starting with "/v3/" is
// also served under the legacy "/r0/" version of that prefix, as older
// clients still call it. Handle panics on a duplicate route: tables are
// static, so that is a programming error.
func (m *Mux) Handle(prefix string, routes []Route) {
	for i := range routes {
		rt := &routes[i]
		m.add(prefix+rt.Path, rt)
		if rest, ok := strings.CutPrefix(rt.Path, "/v3/"); ok {
			m.add(prefix+"/r0/"+rest, rt)
		}
	}
}

func (m *Mux) add(pattern string, rt *Route) {
	n := &m.root
	for _, seg := range strings.Split(strings.TrimPrefix(pattern, "/"), "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := seg[1 : len(seg)-1]
			if n.param == nil {
				n.param = &node{paramName: name}
			} else if n.param.paramName != name {
				panic(fmt.Sprintf("httpx: %s: parameter {%s} clashes with {%s}", pattern, name, n.param.paramName))
			}
			n = n.param
			continue
		}
		if n.static == nil {
			n.static = map[string]*node{}
		}
		child := n.static[seg]
		if child == nil {
			child = &node{}
			n.static[seg] = child
		}
		n = child
	}
	if n.methods == nil {
		n.methods = map[string]*Route{}
	}
	if n.methods[rt.Method] != nil {
		panic("httpx: duplicate route " + rt.Method + " " + pattern)
	}
	n.methods[rt.Method] = rt
}

// param is one matched path parameter.
type param struct{ name, value string }

// match finds the node for a raw (still percent-encoded) path. It returns
// nil when no pattern matches, and the decoded parameters otherwise.
func (m *Mux) match(rawPath string) (*node, []param, bool) {
	if !strings.HasPrefix(rawPath, "/") {
		return nil, nil, false
	}
	segs := strings.Split(rawPath[1:], "/")
	var params []param
	n := m.root.find(segs, &params)
	if n == nil {
		return nil, nil, false
	}
	for i := range params {
		v, err := url.PathUnescape(params[i].value)
		if err != nil {
			return nil, nil, false
		}
		params[i].value = v
	}
	return n, params, true
}

func (n *node) find(segs []string, params *[]param) *node {
	if len(segs) == 0 {
		if n.methods != nil {
			return n
		}
		return nil
	}
	if child := n.static[segs[0]]; child != nil {
		if found := child.find(segs[1:], params); found != nil {
			return found
		}
	}
	if n.param != nil {
		mark := len(*params)
		*params = append(*params, param{n.param.paramName, segs[0]})
		if found := n.param.find(segs[1:], params); found != nil {
			return found
		}
		*params = (*params)[:mark]
	}
	return nil
}
