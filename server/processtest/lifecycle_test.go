package processtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/store"
)

// TestVersion checks the line an operator pastes into a bug report.
func TestVersion(t *testing.T) {
	r := mustCLI(t, "", "version")
	if !strings.HasPrefix(r.stdout, "hearth ") {
		t.Errorf("hearth version printed %q, want a line starting with \"hearth \"", r.stdout)
	}
}

// TestServerNameIsFixedOnFirstStart checks that the server name a data
// directory was first started with sticks: user IDs carry it, the CLI uses
// it, and a start under another name is refused with both names said.
func TestServerNameIsFixedOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	srv := serve(t, dir, "--server-name", "example.test", "--open-registration")
	c := newClient(t, srv.url)
	m := c.must(http.StatusOK, "POST", "/_matrix/client/v3/register", registerBody("alice", "pw"))
	if got := str(m, "user_id"); got != "@alice:example.test" {
		t.Errorf("registered user ID %q, want @alice:example.test", got)
	}
	srv.stop()

	p := launch(t, freeAddr(t), nil, "serve", "--data", dir, "--server-name", "other.test")
	if code := p.waitExit(); code == 0 {
		t.Fatal("a start with another server name succeeded")
	}
	if out := p.out.String(); !strings.Contains(out, `"example.test"`) || !strings.Contains(out, `"other.test"`) {
		t.Errorf("the refusal does not name both server names:\n%s", out)
	}

	// The CLI takes the recorded name, whatever its --server-name default.
	if _, ok := listUsers(t, dir)["@alice:example.test"]; !ok {
		t.Error("hearth user list does not show @alice:example.test")
	}
}

// TestEnvironmentStandsInForFlags runs hearth configured only by HEARTH_*
// variables, as the Docker image does, and checks a flag still wins.
func TestEnvironmentStandsInForFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // made by hearth itself
	addr := freeAddr(t)
	env := []string{
		"HEARTH_SERVER_NAME=env.test", "HEARTH_HTTP=" + addr, "HEARTH_DATA=" + dir,
		"HEARTH_OPEN_REGISTRATION=true",
	}
	p := launch(t, addr, env) // no arguments: serve is the default command
	p.waitReady()
	m := newClient(t, p.url).must(http.StatusOK, "POST", "/_matrix/client/v3/register", registerBody("envuser", "pw"))
	if got := str(m, "user_id"); got != "@envuser:env.test" {
		t.Errorf("user ID %q, want @envuser:env.test", got)
	}
	p.stop()
	if _, err := os.Stat(filepath.Join(dir, store.FileName)); err != nil {
		t.Errorf("HEARTH_DATA was not used: %v", err)
	}

	addr = freeAddr(t)
	env = []string{"HEARTH_SERVER_NAME=wrong.test", "HEARTH_HTTP=" + addr, "HEARTH_DATA=" + dir}
	p = launch(t, addr, env, "serve", "--server-name", "env.test")
	p.waitReady() // it would refuse to start under wrong.test
	p.stop()
}

// TestSigningKeySurvivesRestarts checks that the server keeps its
// federation identity across a clean stop and across a kill.
func TestSigningKeySurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	serve(t, dir).stop()
	first := readSigningKey(t, dir)
	if !strings.HasPrefix(first.ID, "ed25519:") || len(first.Seed) != 32 {
		t.Fatalf("signing key %q with a %d-byte seed", first.ID, len(first.Seed))
	}
	for _, end := range []struct {
		name string
		stop func(p *proc)
	}{
		{"SIGTERM", (*proc).stop},
		{"SIGKILL", (*proc).kill},
	} {
		end.stop(serve(t, dir))
		k := readSigningKey(t, dir)
		if k.ID != first.ID || !bytes.Equal(k.Seed, first.Seed) {
			t.Errorf("after a restart ended by %s the signing key changed: %s → %s", end.name, first.ID, k.ID)
		}
	}
}

func readSigningKey(t *testing.T, dir string) *store.SigningKey {
	t.Helper()
	st, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	var k *store.SigningKey
	if err := st.View(func(tx *store.Tx) (err error) {
		k, err = tx.SigningKey()
		return err
	}); err != nil {
		t.Fatalf("read signing key: %v", err)
	}
	return k
}

var bannerToken = regexp.MustCompile(`one-time registration token:\s*\n\s*(\S+)`)

// TestBootstrapTokenMakesFirstAdmin follows a new operator: registration
// is closed, the first start prints a one-time token, the first account
// registered with it is the admin, the token is then spent, and later
// starts print no token.
func TestBootstrapTokenMakesFirstAdmin(t *testing.T) {
	dir := t.TempDir()
	// Rate limits are off: this test makes more registration requests
	// than the per-address burst allows, all from 127.0.0.1.
	srv := serve(t, dir, "--no-rate-limit")
	srv.waitOutput("one-time registration token")
	match := bannerToken.FindStringSubmatch(srv.out.String())
	if match == nil {
		t.Fatalf("no token in the banner:\n%s", srv.out)
	}
	token := match[1]
	c := newClient(t, srv.url)
	validity := "/_matrix/client/v1/register/m.login.registration_token/validity?token=" + token
	if m := c.must(http.StatusOK, "GET", validity, nil); m["valid"] != true {
		t.Errorf("a fresh bootstrap token is not valid: %v", m)
	}

	// Strangers cannot register without the token.
	status, m := c.do("POST", "/_matrix/client/v3/register", registerBody("stranger", "pw"))
	if status != http.StatusUnauthorized || str(m, "access_token") != "" {
		t.Errorf("m.login.dummy registration on a closed server: %d %v", status, m)
	}

	// The UIA flow a client runs: ask, be told the stages, answer.
	m = c.must(http.StatusUnauthorized, "POST", "/_matrix/client/v3/register",
		map[string]any{"username": "admin", "password": "root pw"})
	if !offersStage(m, "m.login.registration_token") || str(m, "session") == "" {
		t.Fatalf("registration challenge lacks the registration token stage or a session: %v", m)
	}
	m = c.must(http.StatusOK, "POST", "/_matrix/client/v3/register", map[string]any{
		"username": "admin", "password": "root pw",
		"auth": map[string]any{"type": "m.login.registration_token", "token": token, "session": str(m, "session")},
	})
	if got := str(m, "user_id"); got != "@admin:localhost" || str(m, "access_token") == "" {
		t.Errorf("bootstrap registration answered %v", m)
	}

	if m := c.must(http.StatusOK, "GET", validity, nil); m["valid"] != false {
		t.Errorf("the bootstrap token is still valid after use: %v", m)
	}
	status, m = c.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": "second", "password": "pw",
		"auth": map[string]any{"type": "m.login.registration_token", "token": token},
	})
	if (status != http.StatusUnauthorized && status != http.StatusForbidden) || str(m, "access_token") != "" {
		t.Errorf("a second registration with the spent token: %d %v", status, m)
	}
	srv.stop()

	users := listUsers(t, dir)
	if u, ok := users["@admin:localhost"]; !ok || u.admin != "true" {
		t.Errorf("the bootstrap account is not an admin: %+v (listed %v)", u, ok)
	}
	if len(users) != 1 {
		t.Errorf("want only the admin account, have %v", users)
	}

	srv = serve(t, dir)
	srv.stop() // all output is in once the process has exited
	if strings.Contains(srv.out.String(), "registration token") {
		t.Errorf("a restart with an admin printed a token again:\n%s", srv.out)
	}
}

// offersStage reports whether a UIA challenge has a flow with stage.
func offersStage(challenge map[string]any, stage string) bool {
	raw, _ := json.Marshal(challenge["flows"])
	var flows []struct {
		Stages []string `json:"stages"`
	}
	_ = json.Unmarshal(raw, &flows)
	for _, f := range flows {
		for _, s := range f.Stages {
			if s == stage {
				return true
			}
		}
	}
	return false
}

// TestSIGTERMFinishesRequestInFlight sends SIGTERM while a registration is
// half sent: the server stops listening, still answers that request, and
// then exits with status 0, its account saved.
func TestSIGTERMFinishesRequestInFlight(t *testing.T) {
	dir := t.TempDir()
	srv := serve(t, dir, "--open-registration", "--no-rate-limit")

	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(exitTimeout)); err != nil {
		t.Fatal(err)
	}
	body := `{"username":"latecomer","password":"pw","auth":{"type":"m.login.dummy"}}`
	// Expect: 100-continue makes the server say when it has read the
	// headers, so the request is known to be in its hands before SIGTERM.
	fmt.Fprintf(conn, "POST /_matrix/client/v3/register HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", srv.addr, len(body))
	br := bufio.NewReader(conn)
	req, _ := http.NewRequest("POST", "/_matrix/client/v3/register", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue, got %v %v", resp, err)
	}

	srv.signal(syscall.SIGTERM)
	srv.waitOutput("shutting down")
	waitRefused(t, srv.addr)

	if _, err := conn.Write([]byte(body)); err != nil {
		t.Fatalf("finish the request: %v", err)
	}
	resp, err = http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || str(m, "user_id") != "@latecomer:localhost" {
		t.Errorf("the request in flight was answered %d %v", resp.StatusCode, m)
	}

	if code := srv.waitExit(); code != 0 {
		t.Errorf("exit status %d after SIGTERM (%v)", code, srv.waitErr)
	}
	if _, ok := listUsers(t, dir)["@latecomer:localhost"]; !ok {
		t.Error("the account registered during shutdown is gone")
	}
}

// TestSIGTERMRightAfterReadyExitsCleanly stops servers the moment they
// first answer, as a supervisor or a test harness may: each must catch the
// signal and exit 0, never die of it with the database left open.
func TestSIGTERMRightAfterReadyExitsCleanly(t *testing.T) {
	// The window this guards was a few microseconds wide: many tries.
	for range 50 {
		addr := freeAddr(t)
		p := launch(t, addr, nil, "serve", "--data", t.TempDir(), "--http", addr)
		p.waitReadyEvery(time.Millisecond) // to send SIGTERM as early as can be
		p.stop()
	}
}

// waitRefused polls addr until nothing accepts connections on it.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections %v after SIGTERM", addr, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
}
