package syncapi

import (
	"encoding/json"
	"errors"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

// accountDataRoutes is the route table of the spec's "Client config" and
// "Room tagging".
func (a *API) accountDataRoutes() []httpx.Route {
	return []httpx.Route{
		{Method: "GET", Path: "/v3/user/{userId}/account_data/{type}", Auth: httpx.UserAuth, Handler: a.getAccountData},
		{Method: "PUT", Path: "/v3/user/{userId}/account_data/{type}", Auth: httpx.UserAuth, Handler: a.putAccountData},
		{Method: "GET", Path: "/v3/user/{userId}/rooms/{roomId}/account_data/{type}", Auth: httpx.UserAuth, Handler: a.getAccountData},
		{Method: "PUT", Path: "/v3/user/{userId}/rooms/{roomId}/account_data/{type}", Auth: httpx.UserAuth, Handler: a.putAccountData},
		{Method: "GET", Path: "/v3/user/{userId}/rooms/{roomId}/tags", Auth: httpx.UserAuth, Handler: httpx.NoBody(a.getTags)},
		{Method: "PUT", Path: "/v3/user/{userId}/rooms/{roomId}/tags/{tag}", Auth: httpx.UserAuth, Handler: a.putTag},
		{Method: "DELETE", Path: "/v3/user/{userId}/rooms/{roomId}/tags/{tag}", Auth: httpx.UserAuth, Handler: a.deleteTag},
	}
}

// serverManagedTypes may not be set through the account data API: the
// spec reserves m.fully_read (read markers) and m.push_rules (push rules)
// to their own endpoints.
var serverManagedTypes = map[string]bool{"m.fully_read": true, "m.push_rules": true}

func own(r *httpx.Request) error {
	if r.Param("userId") != r.Principal.UserID {
		return mxerr.Forbidden("Cannot access another user's account data")
	}
	if id := r.Param("roomId"); r.HasQuery("roomId") || (id != "" && (len(id) < 2 || id[0] != '!')) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	return nil
}

// getAccountData is GET .../account_data/{type}: the content, or 404.
func (a *API) getAccountData(r *httpx.Request) (any, error) {
	if err := own(r); err != nil {
		return nil, err
	}
	var d *store.AccountData
	err := a.store.View(func(tx *store.Tx) (err error) {
		d, err = tx.GetAccountData(r.Principal.Localpart, r.Param("roomId"), r.Param("type"))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("Account data not found")
	}
	if err != nil {
		return nil, err
	}
	return d.Content, nil
}

// putAccountData is PUT .../account_data/{type}.
func (a *API) putAccountData(r *httpx.Request) (any, error) {
	if err := own(r); err != nil {
		return nil, err
	}
	if serverManagedTypes[r.Param("type")] {
		return nil, &mxerr.Error{Status: 405, Code: "M_BAD_JSON", Message: "Cannot set " + r.Param("type") + " through the account data API"}
	}
	var obj map[string]json.RawMessage
	if err := httpx.DecodeJSON(r.Body(), &obj); err != nil {
		return nil, err
	}
	content, _ := json.Marshal(obj)
	return &httpx.Empty{}, a.setAccountData(r.Principal, r.Param("roomId"), r.Param("type"), func(json.RawMessage) (json.RawMessage, error) { return content, nil })
}

// setAccountData changes one piece of account data with edit, which gets
// the current content (nil if none), and wakes the user's syncs.
func (a *API) setAccountData(p *httpx.Principal, roomID, typ string, edit func(json.RawMessage) (json.RawMessage, error)) error {
	var pos uint64
	err := a.store.Update(func(tx *store.Tx) error {
		var cur json.RawMessage
		if d, err := tx.GetAccountData(p.Localpart, roomID, typ); err == nil {
			cur = d.Content
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		next, err := edit(cur)
		if err != nil {
			return err
		}
		pos, err = tx.PutAccountData(p.Localpart, &store.AccountData{RoomID: roomID, Type: typ, Content: next})
		return err
	})
	if err == nil {
		a.notifier.Notify(pos, []string{p.UserID})
	}
	return err
}

type tagsContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// getTags is GET /user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(r *httpx.Request) (*tagsContent, error) {
	if err := own(r); err != nil {
		return nil, err
	}
	out := &tagsContent{Tags: map[string]json.RawMessage{}}
	err := a.store.View(func(tx *store.Tx) error {
		d, err := tx.GetAccountData(r.Principal.Localpart, r.Param("roomId"), "m.tag")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		_ = json.Unmarshal(d.Content, out)
		if out.Tags == nil {
			out.Tags = map[string]json.RawMessage{}
		}
		return nil
	})
	return out, err
}

// putTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) putTag(r *httpx.Request) (any, error) {
	if err := own(r); err != nil {
		return nil, err
	}
	var body struct {
		Order *float64 `json:"order"`
	}
	if err := httpx.DecodeJSON(r.Body(), &body); err != nil {
		return nil, err
	}
	if body.Order != nil && (*body.Order < 0 || *body.Order > 1) {
		return nil, mxerr.InvalidParam("order must be between 0 and 1")
	}
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(r.Body(), &obj)
	tag, _ := json.Marshal(obj)
	return &httpx.Empty{}, a.editTags(r, func(tags map[string]json.RawMessage) { tags[r.Param("tag")] = tag })
}

// deleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) deleteTag(r *httpx.Request) (any, error) {
	if err := own(r); err != nil {
		return nil, err
	}
	return &httpx.Empty{}, a.editTags(r, func(tags map[string]json.RawMessage) { delete(tags, r.Param("tag")) })
}

func (a *API) editTags(r *httpx.Request, edit func(map[string]json.RawMessage)) error {
	return a.setAccountData(r.Principal, r.Param("roomId"), "m.tag", func(cur json.RawMessage) (json.RawMessage, error) {
		t := tagsContent{Tags: map[string]json.RawMessage{}}
		if cur != nil {
			_ = json.Unmarshal(cur, &t)
			if t.Tags == nil {
				t.Tags = map[string]json.RawMessage{}
			}
		}
		edit(t.Tags)
		return json.Marshal(t)
	})
}
