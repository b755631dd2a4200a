package client

import (
	"hearth/server/accounts"
	"hearth/server/httpx"
	"hearth/server/mxerr"
	"hearth/store"
)

type deviceJSON struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d *store.Device) deviceJSON {
	return deviceJSON{DeviceID: d.ID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

type devicesResp struct {
	Devices []deviceJSON `json:"devices"`
}

// listDevices is GET /devices.
func (a *API) listDevices(r *httpx.Request) (*devicesResp, error) {
	devs, err := a.acc.Devices(r.Principal.Localpart)
	if err != nil {
		return nil, err
	}
	resp := &devicesResp{Devices: make([]deviceJSON, 0, len(devs))}
	for i := range devs {
		resp.Devices = append(resp.Devices, toDeviceJSON(&devs[i]))
	}
	return resp, nil
}

// getDevice is GET /devices/{deviceId}.
func (a *API) getDevice(r *httpx.Request) (*deviceJSON, error) {
	d, err := a.acc.Device(r.Principal.Localpart, r.Param("deviceId"))
	if err != nil {
		return nil, err
	}
	out := toDeviceJSON(d)
	return &out, nil
}

type putDeviceReq struct {
	DisplayName *string `json:"display_name"`
}

// putDevice is PUT /devices/{deviceId}.
func (a *API) putDevice(r *httpx.Request, in *putDeviceReq) (*httpx.Empty, error) {
	if in.DisplayName == nil {
		// Nothing to change, but the device must exist.
		_, err := a.acc.Device(r.Principal.Localpart, r.Param("deviceId"))
		return &httpx.Empty{}, err
	}
	return &httpx.Empty{}, a.acc.RenameDevice(r.Principal.Localpart, r.Param("deviceId"), *in.DisplayName)
}

type deleteDeviceReq struct {
	Auth *accounts.AuthDict `json:"auth"`
}

// deleteDevice is DELETE /devices/{deviceId}, behind UIA m.login.password.
func (a *API) deleteDevice(r *httpx.Request, in *deleteDeviceReq) (*httpx.Empty, error) {
	if _, err := a.acc.Device(r.Principal.Localpart, r.Param("deviceId")); err != nil {
		return nil, err
	}
	if _, err := a.acc.UIA(uiaBind(r), passwordFlows, in.Auth, r.Principal.Localpart); err != nil {
		return nil, err
	}
	return &httpx.Empty{}, a.acc.DeleteDevices(r.Principal.Localpart, []string{r.Param("deviceId")})
}

type deleteDevicesReq struct {
	Devices []string           `json:"devices"`
	Auth    *accounts.AuthDict `json:"auth"`
}

// deleteDevices is POST /delete_devices, behind UIA m.login.password.
func (a *API) deleteDevices(r *httpx.Request, in *deleteDevicesReq) (*httpx.Empty, error) {
	if in.Devices == nil {
		return nil, mxerr.MissingParam("Missing devices")
	}
	if _, err := a.acc.UIA(uiaBind(r), passwordFlows, in.Auth, r.Principal.Localpart); err != nil {
		return nil, err
	}
	return &httpx.Empty{}, a.acc.DeleteDevices(r.Principal.Localpart, in.Devices)
}
