package syncapi

import (
	"hearth/server/httpx"
	"hearth/server/keys"
)

// addDeviceLists adds the end-to-end encryption parts of a sync: on an
// incremental sync, whose device lists changed in (since, upto] (see
// keys.Service.DeviceLists); always, the syncing device's one-time key
// counts and unused fallback key types, from which its client decides to
// upload more.
func (a *API) addDeviceLists(p *httpx.Principal, since, upto uint64, initial bool, resp *syncResp) error {
	if !initial {
		dl, err := a.keys.DeviceLists(p.UserID, since, upto)
		if err != nil {
			return err
		}
		if !dl.Empty() {
			resp.DeviceLists = dl
		}
	}
	var err error
	resp.OneTimeKeysCount, resp.UnusedFallbackKeyTypes, err = a.keys.DeviceKeyCounts(p.Localpart, p.DeviceID)
	return err
}

// deviceListFields are the end-to-end encryption fields of a sync
// response.
type deviceListFields struct {
	DeviceLists            *keys.DeviceLists `json:"device_lists,omitempty"`
	OneTimeKeysCount       map[string]int    `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string          `json:"device_unused_fallback_key_types"`
}
