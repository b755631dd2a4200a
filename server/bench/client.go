package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRetries bounds how often one request is retried after a 429, so a
// server that never lets us through ends the request as an error.
const maxRetries = 20

// maxRetryWait caps one wait asked for by a 429: a server asking for an
// hour would otherwise stall the run without a word.
const maxRetryWait = 2 * time.Minute

// apiError is a failed request: an HTTP status with its Matrix errcode, or
// a transport failure (Status 0).
type apiError struct {
	Status  int
	Code    string // Matrix errcode, "" if the body had none
	Message string
	Timeout bool
	body    []byte // the response body, for a 401 that starts user-interactive auth
}

func (e *apiError) Error() string {
	switch {
	case e.Timeout:
		return "timeout"
	case e.Status == 0:
		return "transport: " + e.Message
	case e.Code != "":
		return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Message)
}

// kind is the error's class for the table: status and errcode without the
// message, so that twenty identical failures read as one line.
func (e *apiError) kind() string {
	switch {
	case e.Timeout:
		return "timeout"
	case e.Status == 0:
		return "transport: " + e.Message
	case e.Code != "":
		return fmt.Sprintf("%d %s", e.Status, e.Code)
	}
	return strconv.Itoa(e.Status)
}

// errorKind classes any error for the table.
func errorKind(err error) string {
	if se, ok := err.(*stepError); ok {
		return se.step + ": " + errorKind(se.err)
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.kind()
	}
	return err.Error()
}

// unrecognised reports whether err says the server has no such endpoint:
// 404 M_UNRECOGNIZED, or a bare 404 from something in front of it.
func unrecognised(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound && (ae.Code == "M_UNRECOGNIZED" || ae.Code == "")
}

// client is one Matrix client: a base URL and, once logged in, a token.
// Clients share one http.Client, so keep-alive connections are pooled.
type client struct {
	base    string // the homeserver's URL, without a trailing slash
	http    *http.Client
	timeout time.Duration // per attempt, on top of any long-poll timeout
	token   string
	userID  string
}

// call is one request: method, path below the server's base URL, query,
// a body marshalled as JSON (nil for none) and where to decode the answer
// (nil to discard it).
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	out    any
	wait   time.Duration // how long the server may hold the request (long-poll)
}

// do sends c, waiting and retrying while the server answers 429 (each one
// counted on p), and returns how long the last attempt took: the time
// spent obeying a rate limiter is not the server's speed.
func (cl *client) do(ctx context.Context, p *phase, c call) (time.Duration, error) {
	var body []byte
	if c.body != nil {
		var err error
		if body, err = json.Marshal(c.body); err != nil {
			return 0, err
		}
	}
	u := cl.base + c.path
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	for attempt := 0; ; attempt++ {
		took, retry, err := cl.attempt(ctx, u, body, c)
		if retry < 0 || attempt == maxRetries {
			return took, err
		}
		if p != nil {
			p.rateLimited.Add(1)
		}
		select {
		case <-ctx.Done():
			return took, ctx.Err()
		case <-time.After(retry):
		}
	}
}

// attempt sends one request. retry is how long to wait before trying again
// after a 429, or -1 when the answer is final.
func (cl *client) attempt(ctx context.Context, u string, body []byte, c call) (took, retry time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, cl.timeout+c.wait)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u, rd)
	if err != nil {
		return 0, -1, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	start := time.Now()
	resp, err := cl.http.Do(req)
	if err != nil {
		return time.Since(start), -1, transportError(ctx, err)
	}
	defer resp.Body.Close()
	// The whole body is part of the answer's latency: a client cannot use
	// half a /sync.
	data, err := io.ReadAll(resp.Body)
	took = time.Since(start)
	if err != nil {
		return took, -1, transportError(ctx, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return took, retryAfter(resp.Header, data), &apiError{Status: resp.StatusCode, Code: "M_LIMIT_EXCEEDED"}
	}
	if resp.StatusCode/100 != 2 {
		return took, -1, statusError(resp.StatusCode, data)
	}
	if c.out != nil {
		if err := json.Unmarshal(data, c.out); err != nil {
			return took, -1, &apiError{Status: resp.StatusCode, Message: "bad JSON: " + err.Error()}
		}
	}
	return took, -1, nil
}

// matrixError is the body of a Matrix error response.
type matrixError struct {
	Errcode      string `json:"errcode"`
	Error        string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms"`
}

func statusError(status int, data []byte) *apiError {
	var m matrixError
	_ = json.Unmarshal(data, &m)
	e := &apiError{Status: status, Code: m.Errcode, Message: m.Error, body: data}
	if e.Message == "" && e.Code == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

func transportError(ctx context.Context, err error) *apiError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &apiError{Timeout: true}
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // "connection refused", not the whole URL again
	}
	return &apiError{Message: msg}
}

// retryAfter is how long a 429 asks us to wait: retry_after_ms in the body
// (the older, finer form), else the Retry-After header in seconds, else a
// second.
func retryAfter(h http.Header, body []byte) time.Duration {
	var m matrixError
	wait := time.Second
	if json.Unmarshal(body, &m) == nil && m.RetryAfterMS > 0 {
		wait = time.Duration(m.RetryAfterMS) * time.Millisecond
	} else if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && s >= 0 {
		wait = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h.Get("Retry-After")); err == nil {
		wait = time.Until(t)
	}
	return min(max(wait, time.Millisecond), maxRetryWait)
}
