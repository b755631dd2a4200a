package processtest

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth/store"
)

// TestSIGKILLLosesNoAcknowledgedAccount kills the server outright in the
// middle of a registration storm. A 200 promises the client its account
// and token are durable; after a restart on the same data directory every
// promised account must log in and every promised token must still work,
// and the database must be consistent.
func TestSIGKILLLosesNoAcknowledgedAccount(t *testing.T) {
	const (
		workers   = 16
		killAfter = 100 // acknowledged registrations before the kill
	)
	dir := t.TempDir()
	srv := serve(t, dir, "--open-registration", "--no-rate-limit")

	var (
		mu       sync.Mutex            // guards acked, problems
		acked    = map[string]string{} // localpart → access token, for every 200
		problems []string              // anything but a 200, or a dropped connection before the kill
		inflight atomic.Int32          // requests sent and not yet answered
		killing  atomic.Bool           // set just before the kill: from then on dropped connections are expected
	)
	enough, failed := make(chan struct{}), make(chan struct{})
	var enoughOnce, failedOnce sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(t, srv.url)
			for i := 0; !killing.Load(); i++ {
				lp := fmt.Sprintf("storm%02d_%d", w, i)
				inflight.Add(1)
				status, body, err := c.call("POST", "/_matrix/client/v3/register", registerBody(lp, "pw-"+lp))
				inflight.Add(-1)
				if err != nil && killing.Load() {
					return // the connection died with the server: no promise was made
				}
				mu.Lock()
				if err == nil && status == http.StatusOK && str(body, "user_id") == "@"+lp+":localhost" && str(body, "access_token") != "" {
					acked[lp] = str(body, "access_token")
				} else {
					problems = append(problems, fmt.Sprintf("%s: %d %v %v", lp, status, body, err))
					failedOnce.Do(func() { close(failed) })
				}
				n := len(acked)
				mu.Unlock()
				if err != nil {
					return
				}
				if n >= killAfter {
					enoughOnce.Do(func() { close(enough) })
				}
			}
		}()
	}

	select {
	case <-enough:
	case <-failed:
	case <-srv.exited:
		t.Fatalf("hearth exited during the storm: %v", srv.waitErr)
	case <-time.After(time.Minute):
		t.Fatal("the storm did not reach its count within a minute")
	}
	killing.Store(true)
	inFlightAtKill := inflight.Load()
	srv.kill()
	wg.Wait()

	if len(problems) > 0 {
		t.Fatalf("%d registrations failed before the kill, e.g. %s", len(problems), problems[0])
	}
	if inFlightAtKill == 0 {
		t.Fatal("no request was in flight when the server was killed; the test proved nothing")
	}
	t.Logf("killed with %d requests in flight; %d registrations acknowledged", inFlightAtKill, len(acked))

	srv = serve(t, dir, "--open-registration", "--no-rate-limit")
	checkAccounts(t, srv.url, acked)
	srv.stop()

	st, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatalf("open the store after the crash: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent after SIGKILL and restart: %v", err)
	}
}

// checkAccounts requires every account in acked (localpart → access
// token) to log in with its password and its token to still be valid.
func checkAccounts(t *testing.T, url string, acked map[string]string) {
	t.Helper()
	// Logins hash the password, so a few run at once.
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lp := range jobs {
				want := "@" + lp + ":localhost"
				c := newClient(t, url)
				status, body, err := c.call("POST", "/_matrix/client/v3/login", loginBody(lp, "pw-"+lp))
				if err != nil || status != http.StatusOK || str(body, "user_id") != want {
					t.Errorf("%s cannot log in after the crash: %d %v %v", lp, status, body, err)
				}
				c.token = acked[lp]
				status, body, err = c.call("GET", "/_matrix/client/v3/account/whoami", nil)
				if err != nil || status != http.StatusOK || str(body, "user_id") != want {
					t.Errorf("the token %s got before the crash no longer works: %d %v %v", lp, status, body, err)
				}
			}
		}()
	}
	for lp := range acked {
		jobs <- lp
	}
	close(jobs)
	wg.Wait()
}
