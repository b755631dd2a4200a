package processtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the polling loops. They are generous so that a slow machine
// fails no test; nothing asserts how fast anything is.
const (
	pollEvery    = 20 * time.Millisecond
	readyTimeout = 10 * time.Second
	exitTimeout  = 15 * time.Second // shutdown may wait 10 s for requests
	cliTimeout   = 20 * time.Second
)

// binary is the hearth binary TestMain builds for the whole run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "hearth-processtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "processtest:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "hearth")
	if err := build(binary); err != nil {
		fmt.Fprintln(os.Stderr, "processtest:", err)
		return 1
	}
	return m.Run()
}

// build compiles the module this package lives in, two directories up, as
// the README tells operators to: static, without cgo.
func build(out string, extra ...string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("module root not found at %s: %w", root, err)
	}
	args := append(append([]string{"build"}, extra...), "-o", out, "hearth")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// hearthEnv is this process's environment without any HEARTH_* variable
// (a developer's own settings must not leak into a test), plus extra.
func hearthEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEARTH_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// freeAddr returns a loopback address with a port nobody listened on a
// moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pick a port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// syncBuffer collects a process's output; exec's copying goroutines write
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one hearth process.
type proc struct {
	tb      testing.TB
	cmd     *exec.Cmd
	addr    string // the --http address it was given, "" if none
	url     string
	out     *syncBuffer   // stdout and stderr, interleaved
	exited  chan struct{} // closed once the process has exited
	waitErr error         // what Wait returned; read only after exited
}

// launch starts the binary with args and env (added to a clean
// environment). addr is where it will listen, if it does; launch does not
// wait for that. The process is killed when the test ends, if still alive.
func launch(tb testing.TB, addr string, env []string, args ...string) *proc {
	tb.Helper()
	p := &proc{tb: tb, addr: addr, url: "http://" + addr, out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = hearthEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start hearth: %v", err)
	}
	// Reaps the process and records how it ended; ends when it exits.
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if tb.Failed() {
			tb.Logf("output of hearth %s:\n%s", strings.Join(args, " "), p.out)
		}
	})
	return p
}

// serve starts `hearth serve` on dir and a fresh loopback port, with more
// flags, and waits until it answers.
func serve(tb testing.TB, dir string, flags ...string) *proc {
	tb.Helper()
	addr := freeAddr(tb)
	p := launch(tb, addr, nil, append([]string{"serve", "--data", dir, "--http", addr}, flags...)...)
	p.waitReady()
	return p
}

// waitReady polls /versions until it answers 200.
func (p *proc) waitReady() {
	p.tb.Helper()
	p.waitReadyEvery(pollEvery)
}

// waitReadyEvery is waitReady polling every interval.
func (p *proc) waitReadyEvery(interval time.Duration) {
	p.tb.Helper()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := hc.Get(p.url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("hearth did not answer /versions within %v (last: %v)", readyTimeout, err)
		}
		select {
		case <-p.exited:
			p.tb.Fatalf("hearth exited before serving: %v", p.waitErr)
		case <-time.After(interval):
		}
	}
}

// waitOutput polls the process's output until it contains s.
func (p *proc) waitOutput(s string) {
	p.tb.Helper()
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			p.tb.Fatalf("hearth did not print %q within %v", s, readyTimeout)
		}
		select {
		case <-p.exited:
			if !strings.Contains(p.out.String(), s) {
				p.tb.Fatalf("hearth exited (%v) without printing %q", p.waitErr, s)
			}
		case <-time.After(pollEvery):
		}
	}
}

// waitExit waits for the process to end and returns its exit code (-1
// when a signal killed it).
func (p *proc) waitExit() int {
	p.tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(exitTimeout):
		p.tb.Fatalf("hearth did not exit within %v", exitTimeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig os.Signal) {
	p.tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.tb.Fatalf("send %v: %v", sig, err)
	}
}

// stop sends SIGTERM, as systemd and docker stop do, and requires a clean
// exit.
func (p *proc) stop() {
	p.tb.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.waitExit(); code != 0 {
		p.tb.Fatalf("hearth exited with status %d after SIGTERM (%v)", code, p.waitErr)
	}
}

// kill sends SIGKILL: a power cut, as far as the process can tell.
func (p *proc) kill() {
	p.tb.Helper()
	p.signal(syscall.SIGKILL)
	p.waitExit()
}

// cliResult is what a hearth command printed and how it exited.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs a hearth command to its end, with stdin as its (non-terminal)
// standard input.
func runCLI(tb testing.TB, stdin string, args ...string) cliResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = hearthEnv(nil)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("hearth %s did not exit within %v", strings.Join(args, " "), cliTimeout)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		tb.Fatalf("run hearth %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// mustCLI runs a hearth command and fails the test unless it succeeds.
func mustCLI(tb testing.TB, stdin string, args ...string) cliResult {
	tb.Helper()
	r := runCLI(tb, stdin, args...)
	if r.code != 0 {
		tb.Fatalf("hearth %s: exit status %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// listedUser is one row of `hearth user list`.
type listedUser struct {
	admin, deactivated string
}

// listUsers runs `hearth user list` on dir and returns its rows by user ID.
func listUsers(tb testing.TB, dir string) map[string]listedUser {
	tb.Helper()
	r := mustCLI(tb, "", "user", "list", "--data", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "USER ID") {
		tb.Fatalf("hearth user list printed no header:\n%s", r.stdout)
	}
	users := map[string]listedUser{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 4 {
			tb.Fatalf("hearth user list: malformed row %q", l)
		}
		users[f[0]] = listedUser{admin: f[1], deactivated: f[2]}
	}
	return users
}

// client speaks the Client-Server API to one process.
type client struct {
	tb    testing.TB
	url   string
	token string
	hc    *http.Client
}

func newClient(tb testing.TB, url string) *client {
	// The timeout only bounds a hung server; requests take milliseconds.
	return &client{tb: tb, url: url, hc: &http.Client{Timeout: 10 * time.Second}}
}

// call sends a request and returns its status and JSON body. It is safe
// from any goroutine: transport errors are returned, not reported.
func (c *client) call(method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, nil
}

// do is call for the test goroutine: a transport error fails the test.
func (c *client) do(method, path string, body any) (int, map[string]any) {
	c.tb.Helper()
	status, m, err := c.call(method, path, body)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	return status, m
}

// must is do that fails the test unless the status is want.
func (c *client) must(want int, method, path string, body any) map[string]any {
	c.tb.Helper()
	status, m := c.do(method, path, body)
	if status != want {
		c.tb.Fatalf("%s %s: want %d, got %d %v", method, path, want, status, m)
	}
	return m
}

// register creates an account through open (m.login.dummy) registration
// and returns a client logged in as it.
func register(tb testing.TB, url, localpart, password string) *client {
	tb.Helper()
	c := newClient(tb, url)
	m := c.must(http.StatusOK, "POST", "/_matrix/client/v3/register", registerBody(localpart, password))
	c.token = str(m, "access_token")
	return c
}

// login logs in with a password and returns the status and body.
func login(tb testing.TB, url, localpart, password string) (int, map[string]any) {
	tb.Helper()
	return newClient(tb, url).do("POST", "/_matrix/client/v3/login", loginBody(localpart, password))
}

func registerBody(localpart, password string) map[string]any {
	return map[string]any{"username": localpart, "password": password, "auth": map[string]any{"type": "m.login.dummy"}}
}

func loginBody(localpart, password string) map[string]any {
	return map[string]any{
		"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": localpart},
	}
}

// str returns a top-level string field of a JSON object.
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
