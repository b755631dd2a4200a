package processtest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stormCall makes request i of worker w. It returns the request's key and,
// when the answer is the server's promise, what it acknowledged (ack); a
// wrong answer is described in problem; err is a transport error.
type stormCall func(w, i int) (key, ack, problem string, err error)

// stormResult is what a storm saw up to the kill.
type stormResult struct {
	acked    map[string]string // key → ack, for every promise the server made
	cutOff   map[string]int    // key → worker, for requests the kill cut off
	inFlight int32             // requests sent and not yet answered at the kill
}

// killMidStorm runs call on workers goroutines until killAfter requests
// have been acknowledged, then SIGKILLs srv with requests in flight. It
// fails the test if any request got a wrong answer, or a dropped
// connection, before the kill, or if nothing was in flight at the kill.
func killMidStorm(t *testing.T, srv *proc, workers, killAfter int, call stormCall) stormResult {
	t.Helper()
	res := stormResult{acked: map[string]string{}, cutOff: map[string]int{}}
	var (
		mu       sync.Mutex   // guards res's maps and problems
		problems []string     // anything but a promise before the kill
		inflight atomic.Int32 // requests sent and not yet answered
		killing  atomic.Bool  // set just before the kill: from then on dropped connections are expected
	)
	enough, failed := make(chan struct{}), make(chan struct{})
	var enoughOnce, failedOnce sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !killing.Load(); i++ {
				inflight.Add(1)
				key, ack, problem, err := call(w, i)
				inflight.Add(-1)
				mu.Lock()
				switch {
				case err != nil && killing.Load():
					res.cutOff[key] = w // the connection died with the server: no promise was made
				case err == nil && problem == "":
					res.acked[key] = ack
				default:
					if err != nil {
						problem += " " + err.Error()
					}
					problems = append(problems, key+": "+problem)
					failedOnce.Do(func() { close(failed) })
				}
				n := len(res.acked)
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
	res.inFlight = inflight.Load()
	srv.kill()
	wg.Wait()

	if len(problems) > 0 {
		t.Fatalf("%d requests failed before the kill, e.g. %s", len(problems), problems[0])
	}
	if res.inFlight == 0 {
		t.Fatal("no request was in flight when the server was killed; the test proved nothing")
	}
	t.Logf("killed with %d requests in flight; %d acknowledged, %d cut off", res.inFlight, len(res.acked), len(res.cutOff))
	return res
}
