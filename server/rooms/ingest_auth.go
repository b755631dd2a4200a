package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hearth/server/pdu"
	"hearth/store"
)

// maxAuthFetch bounds how many events one event's missing auth chain
// may cost in single /event requests.
const maxAuthFetch = 100

// checkAuthEvents is step 4: ev's auth events must be known (their auth
// chain is fetched from origin if not), none of them rejected, and ev must
// pass the auth rules against them. before is the state before ev (nil
// if unknown), kept with ev if it is rejected.
func (s *Service) checkAuthEvents(ctx context.Context, origin string, room *store.Room, ev *pdu.Event, before map[store.StateKey]uint64) error {
	auth, missing, rejected, err := s.authEventsOf(room, ev)
	if err != nil {
		return err
	}
	if len(missing) > 0 && rejected == "" && s.remote != nil {
		if err := s.fetchAuthChain(ctx, origin, room, ev, missing); err != nil {
			return err
		}
		if auth, missing, rejected, err = s.authEventsOf(room, ev); err != nil {
			return err
		}
	}
	if rejected != "" {
		return s.reject(room, ev, before, fmt.Errorf("auth event %s was rejected", rejected))
	}
	if len(missing) > 0 {
		return s.reject(room, ev, before, fmt.Errorf("auth events %v are unknown", missing))
	}
	if err := pdu.Allowed(ev, auth); err != nil {
		return s.reject(room, ev, before, fmt.Errorf("not allowed by its auth events: %w", err))
	}
	return nil
}

// fetchAuthChain stores, each checked against its own auth events, what
// origin gives of the auth chain of ev, whose auth events missing we
// lack: the chain from /event_auth, and where that fails or leaves some
// out (a peer need not keep the endpoint, Complement's peers do not),
// each missing event from /event, then their missing auth events in
// turn, up to maxAuthFetch of them.
func (s *Service) fetchAuthChain(ctx context.Context, origin string, room *store.Room, ev *pdu.Event, missing []string) error {
	chain, err := s.remote.EventAuth(ctx, origin, room.RoomID, ev.ID())
	if err != nil {
		s.log.Info("federation: event_auth failed; fetching the auth events one by one", "event_id", ev.ID(), "origin", origin, "err", err)
	}
	evs := s.parseAll(ctx, room, chain)
	have := map[string]bool{}
	for _, e := range evs {
		have[e.ID()] = true
	}
	fetched := 0
	for level := missing; len(level) > 0 && fetched < maxAuthFetch; {
		unknown, err := s.unknownEvents(level)
		if err != nil {
			return err
		}
		var next []string
		for _, id := range unknown {
			if have[id] || fetched >= maxAuthFetch {
				continue
			}
			have[id] = true
			fetched++
			raw, err := s.remote.Event(ctx, origin, id)
			if err != nil {
				s.log.Info("federation: an auth event could not be fetched", "event_id", id, "origin", origin, "err", err)
				continue
			}
			got := s.parseAll(ctx, room, []json.RawMessage{raw})
			if len(got) != 1 || got[0].ID() != id {
				s.log.Info("federation: a peer answered /event with another event", "event_id", id, "origin", origin)
				continue
			}
			evs = append(evs, got[0])
			for _, a := range got[0].AuthEventIDs() {
				if !have[a] {
					next = append(next, a)
				}
			}
		}
		level = next
	}
	if len(evs) == 0 {
		return nil
	}
	_, err = s.storeOutliers(ctx, room, evs)
	return err
}

// unknownEvents returns those of ids that are not stored.
func (s *Service) unknownEvents(ids []string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			if _, err := tx.EventPos(id); errors.Is(err, store.ErrNotFound) {
				if !slices.Contains(out, id) {
					out = append(out, id)
				}
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// createEventID returns the ID of a room's create event where the room
// ID derives from it (room version 12), else "".
func createEventID(room *store.Room) string {
	if !pdu.DomainlessRoomIDs(room.Version) {
		return ""
	}
	return "$" + strings.TrimPrefix(room.RoomID, "!")
}

// authEventsOf returns ev's auth events that are stored (with the create
// event, which room version 12 leaves out of auth_events), the IDs of
// those that are not, and the ID of one that was rejected, if any: a
// rejected auth event rejects ev.
func (s *Service) authEventsOf(room *store.Room, ev *pdu.Event) (auth []*pdu.Event, missing []string, rejected string, err error) {
	ids := ev.AuthEventIDs()
	if c := createEventID(room); c != "" && ev.ID() != c {
		ids = append(ids, c)
	}
	err = s.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			l, err := s.load(tx, room.Version, id)
			if errors.Is(err, store.ErrNotFound) {
				missing = append(missing, id)
				continue
			}
			if err != nil {
				return err
			}
			if l.rec.Flags&store.FlagRejected != 0 {
				rejected = id
			}
			auth = append(auth, l.ev)
		}
		return nil
	})
	return auth, missing, rejected, err
}

// parseAll parses and verifies remote events, dropping (and logging) those
// that fail. A send_join's state and auth chain run to tens of thousands
// of events, each with its signatures and hashes to check: the work is
// spread over every core.
func (s *Service) parseAll(ctx context.Context, room *store.Room, raws []json.RawMessage) []*pdu.Event {
	s.prefetchKeys(ctx, raws)
	parsed := make([]*pdu.Event, len(raws))
	parse := func(i int) {
		// A worker's panic would take the server down, not just the
		// request: a peer's event the library chokes on is dropped.
		defer func() {
			if p := recover(); p != nil {
				s.log.Warn("federation: dropped a fetched event the library could not read", "room", room.RoomID, "panic", p)
				parsed[i] = nil
			}
		}()
		ev, err := s.parseRemote(ctx, room.Version, raws[i])
		if err != nil {
			s.log.Info("federation: dropped a fetched event", "room", room.RoomID, "err", err)
			return
		}
		if ev.RoomID() != room.RoomID {
			s.log.Info("federation: dropped a fetched event of another room", "room", room.RoomID, "event_id", ev.ID())
			return
		}
		parsed[i] = ev
	}
	workers := min(runtime.GOMAXPROCS(0), len(raws)/16+1)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(raws); i = int(next.Add(1)) - 1 {
				parse(i)
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(parsed, func(e *pdu.Event) bool { return e == nil })
}

// storeOutliers stores events learnt outside the timeline (an auth chain,
// a room's state), each checked against its own auth events, in an order
// where every event comes after its auth events. An event whose auth
// events are missing or rejected, or that fails them, is stored rejected.
// It returns the positions of the events it accepted or already had.
func (s *Service) storeOutliers(ctx context.Context, room *store.Room, evs []*pdu.Event) (map[string]uint64, error) {
	pending := map[string]*pdu.Event{}
	for _, e := range evs {
		pending[e.ID()] = e
	}
	accepted := map[string]*pdu.Event{}
	rejected := map[string]bool{}
	// known returns an auth event from this batch or the store; ok false
	// if it is unknown, err set if it is rejected.
	known := func(tx *store.Tx, id string) (*pdu.Event, bool, error) {
		if e := accepted[id]; e != nil {
			return e, true, nil
		}
		if rejected[id] {
			return nil, true, fmt.Errorf("auth event %s was rejected", id)
		}
		if _, waiting := pending[id]; waiting {
			return nil, false, nil
		}
		l, err := s.load(tx, room.Version, id)
		if err != nil {
			return nil, true, fmt.Errorf("auth event %s is unknown", id)
		}
		if l.rec.Flags&store.FlagRejected != 0 {
			return nil, true, fmt.Errorf("auth event %s was rejected", id)
		}
		return l.ev, true, nil
	}
	positions := map[string]uint64{}
	err := s.store.Update(func(tx *store.Tx) error {
		clear(accepted)
		clear(rejected)
		todo := maps.Clone(pending)
		for len(todo) > 0 {
			progress := false
			for id, e := range todo {
				ids := e.AuthEventIDs()
				if c := createEventID(room); c != "" && id != c {
					ids = append(ids, c)
				}
				var auth []*pdu.Event
				var why error
				ready := true
				for _, a := range ids {
					ae, ok, err := known(tx, a)
					if !ok {
						ready = false
						break
					}
					if err != nil && why == nil {
						why = err
					}
					if ae != nil {
						auth = append(auth, ae)
					}
				}
				if !ready {
					continue
				}
				if why == nil {
					why = pdu.Allowed(e, auth)
				}
				if why != nil {
					s.log.Info("federation: fetched event rejected", "event_id", id, "room", room.RoomID, "why", why)
					rejected[id] = true
				} else {
					accepted[id] = e
				}
				delete(todo, id)
				progress = true
			}
			if !progress { // a cycle, or auth events that refer to each other
				for id := range todo {
					rejected[id] = true
				}
				break
			}
		}
		for id := range rejected {
			if _, err := tx.AddOutlier(room.NID, id, pending[id].JSON(), store.FlagRejected, 0); err != nil {
				return err
			}
		}
		for id, e := range accepted {
			pos, err := tx.AddOutlier(room.NID, id, e.JSON(), 0, 0)
			if err != nil {
				return err
			}
			positions[id] = pos
		}
		return nil
	})
	return positions, err
}

// prefetchKeys fetches, a few servers at a time, the signing keys that
// the signatures of raws name, so that verifying a large batch (a big
// room's state) does not wait on each server in turn.
func (s *Service) prefetchKeys(ctx context.Context, raws []json.RawMessage) {
	if s.keys == nil || len(raws) < 2 {
		return
	}
	type key struct{ server, id string }
	seen := map[key]bool{}
	var keys []key
	for _, raw := range raws {
		var ev struct {
			Signatures map[string]map[string]json.RawMessage `json:"signatures"`
		}
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		for server, sigs := range ev.Signatures {
			for id := range sigs {
				if k := (key{server, id}); !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	if len(keys) < 2 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	now := time.Now().UnixMilli()
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = s.keys(ctx, k.server, k.id, now) // cached for the checks that follow
		}()
	}
	wg.Wait()
}
