package processtest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserCommands walks an operator through the account commands while
// the server is stopped, then checks the server honours what they did.
func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, content string) string {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	oldPW := writeFile("old", "correct horse\n") // editors end files with a newline
	newPW := writeFile("new", "battery staple\n")

	r := mustCLI(t, "", "user", "create", "bob", "--admin", "--password-file", oldPW, "--data", dir)
	if !strings.Contains(r.stdout, "@bob:localhost") {
		t.Errorf("user create does not name the account it made: %q", r.stdout)
	}
	if u, ok := listUsers(t, dir)["@bob:localhost"]; !ok || u.admin != "true" || u.deactivated != "false" {
		t.Fatalf("user list after create: bob = %+v, listed %v", u, ok)
	}

	r = runCLI(t, "", "user", "create", "bob", "--password-file", newPW, "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "@bob:localhost already exists") {
		t.Errorf("creating bob twice: exit %d, stderr %q; want a failure naming the existing user", r.code, r.stderr)
	}

	// A mistyped --data is refused rather than made into a new server.
	typo := filepath.Join(t.TempDir(), "hearth-dta")
	for _, args := range [][]string{{"user", "list", "--data", typo}, {"user", "reset-password", "bob", "--password-file", newPW, "--data", typo}} {
		if r := runCLI(t, "", args...); r.code == 0 || !strings.Contains(r.stderr, "no Hearth database") {
			t.Errorf("%v: exit %d, stderr %q; want a refusal naming the missing database", args, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(typo, "hearth.db")); !os.IsNotExist(err) {
		t.Errorf("a database was created in the mistyped directory: %v", err)
	}

	mustCLI(t, "", "user", "reset-password", "bob", "--password-file", newPW, "--data", dir)

	// Without --password-file on a non-terminal, the password is the first
	// line of standard input (as in `echo pw | hearth user create`).
	mustCLI(t, "from stdin\n", "user", "create", "carol", "--data", dir)
	r = runCLI(t, "", "user", "create", "dave", "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "must not be empty") {
		t.Errorf("create with empty stdin: exit %d, stderr %q; want a failure about the empty password", r.code, r.stderr)
	}
	r = runCLI(t, "", "user", "reset-password", "nobody", "--password-file", newPW, "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "no such user") {
		t.Errorf("reset-password of a missing user: exit %d, stderr %q", r.code, r.stderr)
	}

	users := listUsers(t, dir)
	if _, ok := users["@dave:localhost"]; ok {
		t.Error("a failed create left an account behind")
	}
	if u := users["@carol:localhost"]; u.admin != "false" {
		t.Errorf("carol, created without --admin, is listed with admin %q", u.admin)
	}

	srv := serve(t, dir)
	if status, body := login(t, srv.url, "bob", "battery staple"); status != http.StatusOK || str(body, "user_id") != "@bob:localhost" {
		t.Errorf("login with the reset password: %d %v", status, body)
	}
	if status, body := login(t, srv.url, "bob", "correct horse"); status != http.StatusForbidden || str(body, "errcode") != "M_FORBIDDEN" {
		t.Errorf("login with the old password: %d %v, want 403 M_FORBIDDEN", status, body)
	}
	if status, body := login(t, srv.url, "carol", "from stdin"); status != http.StatusOK {
		t.Errorf("login with the password given on stdin: %d %v", status, body)
	}
	srv.stop()
	if strings.Contains(srv.out.String(), "registration token") {
		t.Error("the server printed a bootstrap token although an admin was created from the command line")
	}
}

// TestUserCommandsRefuseWhileServing checks that account commands do not
// touch the database of a running server but say why they cannot.
func TestUserCommandsRefuseWhileServing(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, dir, "--open-registration")
	register(t, srv.url, "alice", "secret")

	for _, args := range [][]string{
		{"user", "list"},
		{"user", "create", "mallory", "--password-file", pw},
		{"user", "reset-password", "alice", "--password-file", pw},
	} {
		t.Run(args[1], func(t *testing.T) {
			r := runCLI(t, "", append(args, "--data", dir)...)
			if r.code == 0 {
				t.Fatalf("hearth %s succeeded against a running server; stdout %q", strings.Join(args, " "), r.stdout)
			}
			if !strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "hearth serve running") {
				t.Errorf("hearth %s: stderr %q does not say the database is in use by the server", strings.Join(args, " "), r.stderr)
			}
		})
	}

	// The server did not notice, and the refused commands changed nothing.
	if status, body := login(t, srv.url, "alice", "secret"); status != http.StatusOK {
		t.Errorf("login after the refused commands: %d %v", status, body)
	}
	srv.stop()
	if _, ok := listUsers(t, dir)["@mallory:localhost"]; ok {
		t.Error("the refused create made an account")
	}
}
