package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"

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

// ServerAuthenticator verifies the X-Matrix authentication of a request to a
// ServerAuth route and returns the requesting server's name; an error is
// a Matrix error (401 M_UNAUTHORIZED) shown to the caller.
type ServerAuthenticator func(r *Request) (origin string, err error)

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
	Origin    string     // the verified requesting server on ServerAuth routes, else ""
	RemoteIP  string
	Log       *slog.Logger

	body    []byte        // the body read by serveRoute, unless the route streams it
	bodyBuf *bytes.Buffer // from bodyPool, returned when the handler is done
	maxBody int           // the route's body limit
}

// Context is cancelled when the server shuts down.
func (r *Request) Context() context.Context { return r.ctx }

// Method returns the HTTP method.
func (r *Request) Method() string { return string(r.ctx.Method()) }

// Path returns the raw request path, as the client sent it.
func (r *Request) Path() string { return string(r.ctx.URI().PathOriginal()) }

// RequestURI returns the path and query exactly as the client sent them,
// as a federation request's signature covers them.
func (r *Request) RequestURI() string { return string(r.ctx.Request.Header.RequestURI()) }

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

// QueryAll returns every value of a repeated query parameter.
func (r *Request) QueryAll(name string) []string {
	var out []string
	for _, v := range r.ctx.QueryArgs().PeekMulti(name) {
		out = append(out, string(v))
	}
	return out
}

// HasQuery reports whether the query string names the parameter.
func (r *Request) HasQuery(name string) bool { return r.ctx.QueryArgs().Has(name) }

// Header returns a request header, or "".
func (r *Request) Header(name string) string { return string(r.ctx.Request.Header.Peek(name)) }

// Body returns the raw request body; valid only until the handler returns.
// It is empty on StreamBody routes.
func (r *Request) Body() []byte { return r.body }

// ContentLength returns the declared length of the body, or -1 when the
// client did not declare one (chunked).
func (r *Request) ContentLength() int64 {
	if cl := r.ctx.Request.Header.ContentLength(); cl >= 0 {
		return int64(cl)
	}
	return -1
}

// BodyReader streams the body of a StreamBody route. Reading past the
// route's MaxBody fails with 413 M_TOO_LARGE, so a chunked upload cannot
// outgrow the limit either. Valid only until the handler returns.
func (r *Request) BodyReader() io.Reader {
	var src io.Reader = bytes.NewReader(r.body)
	if st := r.ctx.RequestBodyStream(); st != nil {
		src = st
	} else if r.body == nil {
		src = bytes.NewReader(r.ctx.PostBody())
	}
	return &limitedBody{r: src, left: int64(r.maxBody), want: r.ContentLength()}
}

// limitedBody is an io.Reader that fails with M_TOO_LARGE past its limit.
type limitedBody struct {
	r    io.Reader
	left int64
	want int64 // the declared length, -1 for none
	got  int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, mxerr.TooLarge("Request body is too large")
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.got += int64(n)
	if l.left < 0 {
		return n, mxerr.TooLarge("Request body is too large")
	}
	// A client that hangs up mid-body must not look like a short upload.
	if err == io.EOF && l.want >= 0 && l.got < l.want {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// bodyPool recycles the buffers request bodies are read into.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads a whole body of at most limit bytes into a pooled buffer.
func (r *Request) readBody(limit int) error {
	st := r.ctx.RequestBodyStream()
	if st == nil {
		r.body = r.ctx.PostBody()
		return nil
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	r.bodyBuf = buf
	if _, err := buf.ReadFrom(&limitedBody{r: st, left: int64(limit)}); err != nil {
		if _, ok := mxerr.As(err); ok {
			return err
		}
		return mxerr.Unknown("Could not read the request body")
	}
	r.body = buf.Bytes()
	return nil
}

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
