package bench

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// stepError says which request of a many-request operation failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func (r *run) newClient() *client {
	return &client{base: r.cfg.URL, http: r.http, timeout: r.cfg.Timeout}
}

// register is phase 1: every account registers (open registration's
// m.login.dummy dance, or Synapse's shared-secret API) and then logs in
// with its password, as a new user's first client does.
func (r *run) register(ctx context.Context, p *phase) {
	p.note = "register + login"
	if r.cfg.SharedSecret != "" {
		p.note = "shared-secret register + login"
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	users := make([]*client, r.cfg.Users)
	parallel(ctx, r.cfg.Users, r.cfg.Concurrency, func(i int) {
		cl := r.newClient()
		took, err := r.registerOne(ctx, p, cl, fmt.Sprintf("bench.%s.%d", r.id, i), password)
		p.record(took, err)
		if err == nil {
			users[i] = cl
		}
	})
	for _, u := range users {
		if u != nil {
			r.users = append(r.users, u)
		}
	}
}

// registerOne creates the account name and logs cl in as it, returning the
// time its requests took.
func (r *run) registerOne(ctx context.Context, p *phase, cl *client, name, password string) (time.Duration, error) {
	var total time.Duration
	if secret := r.cfg.SharedSecret; secret != "" {
		var nonce struct {
			Nonce string `json:"nonce"`
		}
		took, err := cl.do(ctx, p, call{method: "GET", path: "/_synapse/admin/v1/register", out: &nonce})
		total += took
		if err != nil {
			return total, &stepError{"nonce", err}
		}
		// Synapse's MAC: HMAC-SHA1 keyed by the secret over the
		// NUL-separated nonce, user name, password and admin flag.
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(nonce.Nonce + "\x00" + name + "\x00" + password + "\x00notadmin"))
		took, err = cl.do(ctx, p, call{method: "POST", path: "/_synapse/admin/v1/register", body: map[string]any{
			"nonce": nonce.Nonce, "username": name, "password": password, "admin": false,
			"mac": hex.EncodeToString(mac.Sum(nil)),
		}})
		total += took
		if err != nil {
			return total, &stepError{"register", err}
		}
	} else {
		req := map[string]any{"username": name, "password": password, "inhibit_login": true}
		took, err := cl.do(ctx, p, call{method: "POST", path: "/_matrix/client/v3/register", body: req})
		total += took
		// The first request starts user-interactive auth: a 401 naming
		// the flows and a session to complete one in.
		var ae *apiError
		var uia struct {
			Session string `json:"session"`
			Flows   []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
		}
		if errors.As(err, &ae) && ae.Status == 401 && json.Unmarshal(ae.body, &uia) == nil && uia.Session != "" {
			dummy := false
			for _, f := range uia.Flows {
				dummy = dummy || slices.Equal(f.Stages, []string{"m.login.dummy"})
			}
			if !dummy {
				return total, errors.New("registration offers no m.login.dummy flow: open the server's registration or pass --shared-secret")
			}
			req["auth"] = map[string]any{"type": "m.login.dummy", "session": uia.Session}
			took, err = cl.do(ctx, p, call{method: "POST", path: "/_matrix/client/v3/register", body: req})
			total += took
		}
		if err != nil {
			return total, &stepError{"register", err}
		}
	}
	var login struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	took, err := cl.do(ctx, p, call{method: "POST", path: "/_matrix/client/v3/login", body: map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]any{"type": "m.id.user", "user": name},
		"password":                    password,
		"initial_device_display_name": "hearth bench",
	}, out: &login})
	total += took
	if err == nil && login.AccessToken == "" {
		err = errors.New("answered without an access_token")
	}
	if err != nil {
		return total, &stepError{"login", err}
	}
	cl.token, cl.userID = login.AccessToken, login.UserID
	return total, nil
}

// createRooms is phase 2: public rooms are created, round robin over the
// accounts, then joined by whoever the later phases need in them.
func (r *run) createRooms(ctx context.Context, p *phase) {
	created := make([]*room, r.cfg.Rooms)
	parallel(ctx, r.cfg.Rooms, r.cfg.Concurrency, func(i int) {
		creator := i % len(r.users)
		var out struct {
			RoomID string `json:"room_id"`
		}
		took, err := r.users[creator].do(ctx, p, call{method: "POST", path: "/_matrix/client/v3/createRoom", body: map[string]any{
			"preset": "public_chat", "name": fmt.Sprintf("bench %s room %d", r.id, i),
		}, out: &out})
		if err == nil && out.RoomID == "" {
			err = errors.New("createRoom answered without a room_id")
		}
		p.record(took, err)
		if err == nil {
			created[i] = &room{id: out.RoomID, creator: creator}
		}
	})
	for _, rm := range created {
		if rm != nil {
			r.rooms = append(r.rooms, *rm)
		}
	}
	if len(r.rooms) == 0 {
		return
	}
	joins := r.joinPlan()
	p.total.Add(int64(len(joins)))
	p.note = fmt.Sprintf("%d createRoom + %d joins", len(r.rooms), len(joins))
	parallel(ctx, len(joins), r.cfg.Concurrency, func(i int) {
		m := joins[i]
		took, err := r.users[m.user].do(ctx, p, call{method: "POST",
			path: "/_matrix/client/v3/join/" + url.PathEscape(r.rooms[m.room].id), body: map[string]any{}})
		p.record(took, err)
	})
}

// membership is an account (index in users) in a room (index in rooms).
type membership struct{ user, room int }

// joinPlan lists the joins the later phases need: account 0 in every room
// (the initial /sync of "a user in many rooms", and the reader of room
// 0's history); every concurrent client's account in the shared room 0;
// the delivery receiver, account 1, in room 0; concurrent client c's
// account in room c, its own.
func (r *run) joinPlan() []membership {
	want := map[membership]bool{}
	add := func(u, rm int) {
		if r.rooms[rm].creator != u {
			want[membership{u, rm}] = true
		}
	}
	nu, nr := len(r.users), len(r.rooms)
	for rm := range nr {
		add(0, rm)
	}
	for c := range r.cfg.Concurrency {
		add(c%nu, 0)
		add(c%nu, c%nr)
	}
	add(1%nu, 0)
	plan := make([]membership, 0, len(want))
	for m := range want {
		plan = append(plan, m)
	}
	slices.SortFunc(plan, func(a, b membership) int {
		if a.room != b.room {
			return a.room - b.room
		}
		return a.user - b.user
	})
	return plan
}

// send sends one text message and returns how long its 200 took.
func (r *run) send(ctx context.Context, p *phase, cl *client, roomID, txnID, body string) (time.Duration, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	took, err := cl.do(ctx, p, call{method: "PUT",
		path: "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + url.PathEscape(txnID),
		body: map[string]any{"msgtype": "m.text", "body": body}, out: &out})
	if err == nil && out.EventID == "" {
		err = errors.New("send answered without an event_id")
	}
	if err == nil && roomID == r.rooms[0].id {
		r.room0Messages.Add(1)
	}
	return took, err
}

// sendSequential is phase 3: one client in one room, each message sent
// after the previous one's 200.
func (r *run) sendSequential(ctx context.Context, p *phase) {
	p.note = "1 client, 1 room"
	for i := range r.cfg.Messages {
		if ctx.Err() != nil {
			return
		}
		took, err := r.send(ctx, p, r.users[0], r.rooms[0].id, "seq."+strconv.Itoa(i), fmt.Sprintf("bench %s sequential %d", r.id, i))
		p.record(took, err)
	}
}

// sendConcurrentRooms is phase 4a: Concurrency clients at once, client c
// in room c (rooms are shared when there are fewer rooms than clients).
func (r *run) sendConcurrentRooms(ctx context.Context, p *phase) {
	c := r.cfg.Concurrency
	p.note = fmt.Sprintf("%d clients, %d rooms", c, min(c, len(r.rooms)))
	r.sendConcurrently(ctx, p, "rooms", func(client int) string { return r.rooms[client%len(r.rooms)].id })
}

// sendConcurrentShared is phase 4b: Concurrency clients at once, all in
// room 0, so that they queue on one room's writer.
func (r *run) sendConcurrentShared(ctx context.Context, p *phase) {
	p.note = fmt.Sprintf("%d clients, 1 room", r.cfg.Concurrency)
	r.sendConcurrently(ctx, p, "shared", func(int) string { return r.rooms[0].id })
}

// sendConcurrently sends Messages messages from Concurrency clients, each
// sending its share one after another; client c is account c.
func (r *run) sendConcurrently(ctx context.Context, p *phase, kind string, roomOf func(client int) string) {
	n, c := r.cfg.Messages, r.cfg.Concurrency
	parallel(ctx, c, c, func(client int) {
		cl := r.users[client%len(r.users)]
		for i := client; i < n && ctx.Err() == nil; i += c {
			took, err := r.send(ctx, p, cl, roomOf(client), kind+"."+strconv.Itoa(i), fmt.Sprintf("bench %s %s %d", r.id, kind, i))
			p.record(took, err)
		}
	})
}

// syncResp is the part of a /sync response the phases read.
type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Content struct {
						Body string `json:"body"`
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// has reports whether the response carries a message with body in roomID.
func (s *syncResp) has(roomID, body string) bool {
	for _, ev := range s.Rooms.Join[roomID].Timeline.Events {
		if ev.Content.Body == body {
			return true
		}
	}
	return false
}

// syncCall is GET /sync; the server may hold it for timeout.
func syncCall(since string, timeout time.Duration, filter string, out *syncResp) call {
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	return call{method: "GET", path: "/_matrix/client/v3/sync", query: q, out: out, wait: timeout}
}

// doSync runs one /sync and checks it has a next_batch.
func doSync(ctx context.Context, p *phase, cl *client, since string, timeout time.Duration, filter string) (*syncResp, time.Duration, error) {
	var s syncResp
	took, err := cl.do(ctx, p, syncCall(since, timeout, filter, &s))
	if err == nil && s.NextBatch == "" {
		err = errors.New("/sync answered without a next_batch")
	}
	return &s, took, err
}

func unsupportedSync(err error) string {
	return "the server has no /sync (" + errorKind(err) + ")"
}

const (
	// longPoll is the timeout a delivery's /sync asks for: far longer
	// than a delivery should take.
	longPoll = 10 * time.Second
	// deliveryDeadline is when a message that has not come down /sync
	// counts as lost.
	deliveryDeadline = 15 * time.Second
	// parkDelay is how long the sender waits after the receiver's /sync
	// left, so that it is waiting in the server when the message comes.
	// Were it not yet, the message would still arrive, just sooner.
	parkDelay = 20 * time.Millisecond
)

// syncDelivery is phase 5: account 1 waits in /sync, account 0 sends to
// room 0, and the time from the send's 200 to the /sync response that
// carries the message is measured. A response before the 200 counts as 0.
func (r *run) syncDelivery(ctx context.Context, p *phase) {
	p.note = "send's 200 → /sync response"
	sender, recv, roomID := r.users[0], r.users[1%len(r.users)], r.rooms[0].id
	f, _ := json.Marshal(map[string]any{
		"room":         map[string]any{"rooms": []string{roomID}, "timeline": map[string]any{"limit": 20}},
		"presence":     map[string]any{"not_types": []string{"*"}},
		"account_data": map[string]any{"not_types": []string{"*"}},
	})
	filter := string(f)
	first, _, err := doSync(ctx, p, recv, "", 0, filter)
	if unrecognised(err) {
		p.unsupported = unsupportedSync(err)
		return
	}
	if err != nil {
		p.record(0, &stepError{"first /sync", err})
		return
	}
	since := first.NextBatch
	for i := range r.cfg.Deliveries {
		if ctx.Err() != nil {
			return
		}
		body := fmt.Sprintf("bench %s delivery %d", r.id, i)
		wctx, cancel := context.WithCancel(ctx)
		got := make(chan delivery, 1)
		// The receiver waits in /sync while this goroutine sends; it ends
		// when the message arrives, its deadline passes or wctx is cancelled.
		go func() { got <- awaitMessage(wctx, p, recv, roomID, body, since, filter) }()
		time.Sleep(parkDelay)
		_, err := r.send(ctx, p, sender, roomID, "delivery."+strconv.Itoa(i), body)
		sent := time.Now()
		if err != nil {
			cancel()
		}
		d := <-got
		cancel()
		since = d.since
		switch {
		case err != nil:
			p.record(0, &stepError{"send", err})
		case d.err != nil:
			p.record(0, &stepError{"/sync", d.err})
		default:
			p.record(max(0, d.at.Sub(sent)), nil)
		}
	}
}

// delivery is what a receiver waiting for one message saw.
type delivery struct {
	at    time.Time // when the response carrying the message was read
	since string    // the token to sync from next
	err   error
}

// awaitMessage long-polls /sync from since until a message with body
// arrives in roomID.
func awaitMessage(ctx context.Context, p *phase, cl *client, roomID, body, since, filter string) delivery {
	deadline := time.Now().Add(deliveryDeadline)
	for {
		s, _, err := doSync(ctx, p, cl, since, longPoll, filter)
		if err != nil {
			return delivery{since: since, err: err}
		}
		at := time.Now()
		since = s.NextBatch
		if s.has(roomID, body) {
			return delivery{at: at, since: since}
		}
		if at.After(deadline) {
			return delivery{since: since, err: fmt.Errorf("the message did not come down /sync within %s", deliveryDeadline)}
		}
	}
}

// syncInitial is phase 6a: account 0, a member of every room, syncs from
// nothing with the server's default filter, as a client logging in does.
func (r *run) syncInitial(ctx context.Context, p *phase) {
	p.note = fmt.Sprintf("a user in %d rooms", len(r.rooms))
	for i := range r.cfg.InitialSyncs {
		if ctx.Err() != nil {
			return
		}
		_, took, err := doSync(ctx, p, r.users[0], "", 0, "")
		if i == 0 && unrecognised(err) {
			p.unsupported = unsupportedSync(err)
			return
		}
		p.record(took, err)
	}
}

// syncIncremental is phase 6b: account 0 syncs from its latest token with
// timeout 0 and nothing new, as an idle client's poll costs the server.
func (r *run) syncIncremental(ctx context.Context, p *phase) {
	p.note = "nothing new, timeout=0"
	s, _, err := doSync(ctx, p, r.users[0], "", 0, "")
	if unrecognised(err) {
		p.unsupported = unsupportedSync(err)
		return
	}
	if err != nil {
		p.record(0, &stepError{"first /sync", err})
		return
	}
	since := s.NextBatch
	for range r.cfg.IncrementalSyncs {
		if ctx.Err() != nil {
			return
		}
		s, took, err := doSync(ctx, p, r.users[0], since, 0, "")
		p.record(took, err)
		if err == nil {
			since = s.NextBatch
		}
	}
}

// backfillPages is how many /messages pages hold the messages sent to
// room 0.
func (r *run) backfillPages() int {
	n := int(r.room0Messages.Load())
	return max(1, (n+r.cfg.PageSize-1)/r.cfg.PageSize)
}

// messagesBackfill is phase 7: account 0 pages back through room 0's
// timeline, PageSize events at a time, over every message sent to it.
func (r *run) messagesBackfill(ctx context.Context, p *phase) {
	pages, sent := r.backfillPages(), int(r.room0Messages.Load())
	p.note = fmt.Sprintf("%d events a page, %d messages", r.cfg.PageSize, sent)
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(r.rooms[0].id) + "/messages"
	from, seen := "", 0
	for i := range pages {
		if ctx.Err() != nil {
			return
		}
		q := url.Values{"dir": {"b"}, "limit": {strconv.Itoa(r.cfg.PageSize)}}
		if from != "" {
			q.Set("from", from)
		}
		var out struct {
			Chunk []json.RawMessage `json:"chunk"`
			End   string            `json:"end"`
		}
		took, err := r.users[0].do(ctx, p, call{method: "GET", path: path, query: q, out: &out})
		seen += len(out.Chunk)
		if err == nil && (len(out.Chunk) == 0 || out.End == "" && i < pages-1) {
			err = fmt.Errorf("the timeline ended after %d events, but %d messages were sent to the room", seen, sent)
		}
		p.record(took, err)
		if err != nil {
			return // without the page's end token there is no next page
		}
		from = out.End
	}
}
