// Package httpx is the only package that touches fasthttp: routing, typed
// handlers, access-token auth, rate limits, request limits, panic recovery
// and the rendering of Matrix errors.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"hearth/server/mxerr"
)

// drainOversize is the largest refused body that is read to its end
// before the 413 is sent.
const drainOversize = 4 << 20

// DefaultMaxBody is the body size limit of a route that sets none. The
// spec's largest JSON object, an event, is 65,536 bytes; key uploads with
// many one-time keys are the next largest.
const DefaultMaxBody = 1 << 20

// Server serves one Mux on any number of listeners.
type Server struct {
	mux    *Mux
	auth   Authenticator
	log    *slog.Logger
	srv    *fasthttp.Server
	prefix string        // random per process, so request IDs are unique across restarts
	nextID atomic.Uint64 // request counter

	serverAuth ServerAuthenticator // verifies ServerAuth routes; set before serving
}

// NewServer returns a server for mux. maxBody is the largest body any route
// accepts; routes check their own limits. fasthttp's limit is set above it,
// because a body over fasthttp's limit is refused before it is read and the
// connection reset mid-upload, which clients see as a network error rather
// than the 413 a route's own check gives.
func NewServer(mux *Mux, auth Authenticator, log *slog.Logger, maxBody int) *Server {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	s := &Server{mux: mux, auth: auth, log: log, prefix: hex.EncodeToString(rnd[:])}
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.handleParseError,
		Name:                         "Hearth",
		MaxRequestBodySize:           2 * max(maxBody, DefaultMaxBody),
		ReadTimeout:                  60 * time.Second,
		WriteTimeout:                 60 * time.Second,
		IdleTimeout:                  120 * time.Second,
		DisablePreParseMultipartForm: true,
		// Streamed, so that a media upload goes to disk as it arrives
		// instead of sitting in memory; serveRoute reads the bodies of
		// other routes itself, bounded by their MaxBody.
		StreamRequestBody: true,
		CloseOnShutdown:   true,
		Logger:            fasthttpLogger{log},
	}
	return s
}

// SetServerAuth sets what verifies requests to ServerAuth routes. Call it
// before Serve; without it those routes answer 401.
func (s *Server) SetServerAuth(fn ServerAuthenticator) { s.serverAuth = fn }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting, waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	r := &Request{
		ctx:      ctx,
		ID:       s.prefix + "-" + strconv.FormatUint(s.nextID.Add(1), 36),
		RemoteIP: ctx.RemoteIP().String(),
	}
	r.Log = s.log.With("req", r.ID)
	setCORS(ctx)
	pattern := "-"
	defer func() {
		if p := recover(); p != nil {
			r.Log.Error("panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			writeError(ctx, r, mxerr.Internal().With("request_id", r.ID))
		}
		r.Log.Debug("request", "method", string(ctx.Method()), "route", pattern,
			"status", ctx.Response.StatusCode(), "ms", time.Since(start).Milliseconds(), "ip", r.RemoteIP)
	}()

	if string(ctx.Method()) == fasthttp.MethodOptions {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	n, params, ok := s.mux.match(string(ctx.URI().PathOriginal()))
	if !ok {
		writeError(ctx, r, mxerr.Unrecognized())
		return
	}
	rt := n.methods[string(ctx.Method())]
	if rt == nil && string(ctx.Method()) == fasthttp.MethodHead {
		rt = n.methods[fasthttp.MethodGet]
	}
	if rt == nil {
		writeError(ctx, r, mxerr.MethodNotAllowed())
		return
	}
	pattern = rt.Method + " " + rt.Path
	r.route, r.params = rt, params
	resp, err := s.serveRoute(r, rt)
	if r.bodyBuf != nil {
		bodyPool.Put(r.bodyBuf)
		r.body, r.bodyBuf = nil, nil
	}
	if err != nil {
		writeError(ctx, r, err)
		return
	}
	if st, ok := resp.(*Stream); ok {
		writeStream(ctx, st)
		return
	}
	if f, ok := resp.(*File); ok {
		if err := writeFile(ctx, f); err != nil {
			writeError(ctx, r, err)
		}
		return
	}
	body, err := marshalBody(resp)
	if err != nil {
		writeError(ctx, r, fmt.Errorf("marshal response: %w", err))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func (s *Server) serveRoute(r *Request, rt *Route) (any, error) {
	limit := rt.MaxBody
	if limit == 0 {
		limit = DefaultMaxBody
	}
	// A declared length over the limit is refused without being kept. A
	// modest excess is read and dropped first, so the client, still
	// sending, gets the 413 instead of a reset connection; a huge body is
	// cut off.
	if cl := r.ctx.Request.Header.ContentLength(); cl > limit {
		if st := r.ctx.RequestBodyStream(); st != nil && cl <= drainOversize {
			_, _ = io.Copy(io.Discard, io.LimitReader(st, int64(cl)))
		}
		return nil, mxerr.TooLarge("Request body is larger than %d bytes", limit)
	}
	r.maxBody = limit
	if !rt.StreamBody {
		if err := r.readBody(limit); err != nil {
			return nil, err
		}
	}
	if ok, wait := rt.Limit.Allow("ip:"+r.RemoteIP, time.Now()); !ok {
		return nil, mxerr.LimitExceeded(wait)
	}
	if rt.Auth == ServerAuth {
		if s.serverAuth == nil {
			return nil, mxerr.Unauthorized("Federation is not enabled on this server")
		}
		origin, err := s.serverAuth(r)
		if err != nil {
			return nil, err
		}
		r.Origin = origin
		r.Log = r.Log.With("origin", origin)
		return rt.Handler(r)
	}
	if rt.Auth != NoAuth {
		token := accessToken(r.ctx)
		switch {
		case token == "" && rt.Auth == OptionalAuth:
		case token == "":
			return nil, mxerr.MissingToken()
		default:
			p, err := s.auth(token, r.RemoteIP, rt.Auth == ExpiredOK)
			if err != nil {
				return nil, err
			}
			r.Principal = p
			r.Log = r.Log.With("user", p.UserID)
		}
	}
	return rt.Handler(r)
}

// accessToken takes the token from "Authorization: Bearer", or else from
// the access_token query parameter that older clients use.
func accessToken(ctx *fasthttp.RequestCtx) string {
	if h := ctx.Request.Header.Peek("Authorization"); len(h) > 0 {
		if tok, ok := strings.CutPrefix(string(h), "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return string(ctx.QueryArgs().Peek("access_token"))
}

// writeError renders err: Matrix errors as themselves, anything else as a
// 500 whose cause is logged, never shown.
func writeError(ctx *fasthttp.RequestCtx, r *Request, err error) {
	e, ok := mxerr.As(err)
	if !ok {
		r.Log.Error("internal error", "err", err)
		e = mxerr.Internal().With("request_id", r.ID)
	} else if e.Status >= 500 {
		r.Log.Error("server error", "err", err)
	}
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(secs))
	}
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(errorBody(e))
}

// setCORS sets the headers the spec asks of every Client-Server response,
// so that web clients on other origins can call us.
func setCORS(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
}

// handleParseError answers requests fasthttp could not read, above all
// bodies over the server-wide limit, with a Matrix error.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	r := &Request{ctx: ctx, ID: s.prefix + "-" + strconv.FormatUint(s.nextID.Add(1), 36), Log: s.log}
	setCORS(ctx)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, r, mxerr.TooLarge("Request body too large"))
		return
	}
	s.log.Debug("unreadable request", "err", err, "ip", ctx.RemoteIP().String())
	writeError(ctx, r, mxerr.Unknown("Malformed HTTP request"))
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn("fasthttp: " + fmt.Sprintf(format, args...))
}
