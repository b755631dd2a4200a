package backup

import (
	"encoding/json"
	"errors"
	"strconv"

	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

type versionReq struct {
	Algorithm *string         `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"` // PUT only: if sent, the path's version
}

// check validates the body and returns auth_data compacted.
func (in *versionReq) check() (json.RawMessage, error) {
	if in.Algorithm == nil || *in.Algorithm == "" {
		return nil, mxerr.MissingParam("Missing algorithm")
	}
	if in.AuthData == nil {
		return nil, mxerr.MissingParam("Missing auth_data")
	}
	auth, ok := object(in.AuthData)
	if !ok {
		return nil, mxerr.BadJSON("auth_data must be an object")
	}
	return auth, nil
}

type createVersionResp struct {
	Version string `json:"version"`
}

// createVersion is POST /room_keys/version: a new version, which becomes
// the current one (keys go only there from now on).
func (a *API) createVersion(r *httpx.Request, in *versionReq) (*createVersionResp, error) {
	auth, err := in.check()
	if err != nil {
		return nil, err
	}
	var v *store.BackupVersion
	err = a.store.Update(func(tx *store.Tx) (err error) {
		v, err = tx.CreateBackupVersion(r.Principal.Localpart, *in.Algorithm, auth)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &createVersionResp{Version: strconv.FormatUint(v.Version, 10)}, nil
}

type versionResp struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

func versionInfo(v *store.BackupVersion) *versionResp {
	return &versionResp{
		Algorithm: v.Algorithm, AuthData: v.AuthData, Count: v.Count,
		Etag: strconv.FormatUint(v.Etag, 10), Version: strconv.FormatUint(v.Version, 10),
	}
}

// currentVersion is GET /room_keys/version: the version keys go to.
func (a *API) currentVersion(r *httpx.Request) (*versionResp, error) {
	var v *store.BackupVersion
	err := a.store.View(func(tx *store.Tx) (err error) {
		v, err = tx.CurrentBackupVersion(r.Principal.Localpart)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("No current backup version")
	}
	if err != nil {
		return nil, err
	}
	return versionInfo(v), nil
}

// getVersion is GET /room_keys/version/{version}.
func (a *API) getVersion(r *httpx.Request) (*versionResp, error) {
	ver, ok := parseVersion(r.Param("version"))
	if !ok {
		return nil, errUnknownVersion
	}
	var v *store.BackupVersion
	err := a.store.View(func(tx *store.Tx) (err error) {
		v, err = tx.BackupVersion(r.Principal.Localpart, ver)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return versionInfo(v), nil
}

// updateVersion is PUT /room_keys/version/{version}: only auth_data may
// change (a client adds a signature, say); the algorithm must stay.
func (a *API) updateVersion(r *httpx.Request, in *versionReq) (*httpx.Empty, error) {
	auth, err := in.check()
	if err != nil {
		return nil, err
	}
	if in.Version != nil && *in.Version != r.Param("version") {
		return nil, mxerr.InvalidParam("Version in body does not match the version in the path")
	}
	ver, ok := parseVersion(r.Param("version"))
	if !ok {
		return nil, errUnknownVersion
	}
	err = a.store.Update(func(tx *store.Tx) error {
		v, err := tx.BackupVersion(r.Principal.Localpart, ver)
		if err != nil {
			return err
		}
		if v.Algorithm != *in.Algorithm {
			return mxerr.InvalidParam("Algorithm does not match the backup's")
		}
		return tx.UpdateBackupAuthData(r.Principal.Localpart, ver, auth)
	})
	if err != nil {
		return nil, notFound(err)
	}
	return &httpx.Empty{}, nil
}

// deleteVersion is DELETE /room_keys/version/{version}: the version and
// all its keys go. Deleting it again succeeds, as the spec asks.
func (a *API) deleteVersion(r *httpx.Request) (*httpx.Empty, error) {
	ver, ok := parseVersion(r.Param("version"))
	if !ok {
		return nil, errUnknownVersion
	}
	err := a.store.Update(func(tx *store.Tx) error {
		return tx.DeleteBackupVersion(r.Principal.Localpart, ver)
	})
	if err != nil {
		return nil, notFound(err)
	}
	return &httpx.Empty{}, nil
}
