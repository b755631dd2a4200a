package processtest

import (
	"fmt"
	"net/http"
	"sync"
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

	clients := make([]*client, workers) // one a worker, each with its own connections
	for w := range clients {
		clients[w] = newClient(t, srv.url)
	}
	res := killMidStorm(t, srv, workers, killAfter, func(w, i int) (string, string, string, error) {
		lp := fmt.Sprintf("storm%02d_%d", w, i)
		status, body, err := clients[w].call("POST", "/_matrix/client/v3/register", registerBody(lp, "pw-"+lp))
		if err == nil && status == http.StatusOK && str(body, "user_id") == "@"+lp+":localhost" && str(body, "access_token") != "" {
			return lp, str(body, "access_token"), "", nil
		}
		return lp, "", fmt.Sprintf("%d %v", status, body), err
	})
	acked := res.acked

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
