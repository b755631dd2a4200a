package httpx

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/valyala/fasthttp"

	"hearth/server/mxerr"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	UserID    string
	Localpart string
	DeviceID  string
	Admin     bool
	Expired   bool // only on ExpiredOK routes: the token has expired
}

// Authenticator resolves an access token. It returns a Matrix error
// (M_UNKNOWN_TOKEN, with soft_logout for an expired token unless
// allowExpired) when the token is not valid.
type Authenticator func(token, remoteIP string, allowExpired bool) (*Principal, error)

// Request is what a handler sees of an HTTP request. Strings it returns are
// copies; Body is fasthttp's buffer and is valid only until the handler
// returns.
type Request struct {
	ctx       *fasthttp.RequestCtx
	route     *Route
	params    []param
	ID        string     // request ID, also in the log and in 500 responses
	Principal *Principal // nil on NoAuth routes and anonymous OptionalAuth calls
	RemoteIP  string
	Log       *slog.Logger
}

// Context is cancelled when the server shuts down.
func (r *Request) Context() context.Context { return r.ctx }

// Method returns the HTTP method.
func (r *Request) Method() string { return string(r.ctx.Method()) }

// Path returns the raw request path, as the client sent it.
func (r *Request) Path() string { return string(r.ctx.URI().PathOriginal()) }

// Route names the matched route and its parameters, e.g.
// "DELETE /v3/devices/{deviceId} deviceId=ABC": the same for every prefix
// (r0, v3) and spelling (percent-encoding) of one request.
func (r *Request) Route() string {
	var b strings.Builder
	b.WriteString(r.route.Method + " " + r.route.Path)
	for _, p := range r.params {
		b.WriteString(" " + p.name + "=" + p.value)
	}
	return b.String()
}

// Param returns the decoded path parameter called name.
func (r *Request) Param(name string) string {
	for _, p := range r.params {
		if p.name == name {
			return p.value
		}
	}
	return ""
}

// Query returns the query parameter called name, or "".
func (r *Request) Query(name string) string { return string(r.ctx.QueryArgs().Peek(name)) }

// HasQuery reports whether the query string names the parameter.
func (r *Request) HasQuery(name string) bool { return r.ctx.QueryArgs().Has(name) }

// Header returns a request header, or "".
func (r *Request) Header(name string) string { return string(r.ctx.Request.Header.Peek(name)) }

// Body returns the raw request body; valid only until the handler returns.
func (r *Request) Body() []byte { return r.ctx.PostBody() }

// Handler serves one route. It returns the response body, marshalled as
// JSON with status 200 (nil renders as {}), or an error: a *mxerr.Error is
// shown to the client, anything else becomes a 500 and goes to the log.
type Handler func(r *Request) (any, error)

// JSON adapts a typed handler: the body is decoded into a new In (an empty
// body counts as {}) before fn runs.
func JSON[In, Out any](fn func(r *Request, in *In) (Out, error)) Handler {
	return func(r *Request) (any, error) {
		in := new(In)
		if err := DecodeJSON(r.Body(), in); err != nil {
			return nil, err
		}
		return fn(r, in)
	}
}

// NoBody adapts a handler that reads no body.
func NoBody[Out any](fn func(r *Request) (Out, error)) Handler {
	return func(r *Request) (any, error) { return fn(r) }
}

// Empty is the {} response.
type Empty struct{}

func marshalBody(v any) ([]byte, error) {
	if v == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return []byte("{}"), nil
	}
	return b, nil
}

func errorBody(e *mxerr.Error) []byte {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	if e.Code != "" {
		m["errcode"] = e.Code
		m["error"] = e.Message
	}
	b, _ := json.Marshal(m)
	return b
}
