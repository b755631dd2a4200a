package client_test

import (
	"testing"

	"hearth/server/servertest"
)

// Spec: "Device management": list, get, rename, delete behind UIA, and a
// deleted device's token stops working at once.
func TestDevices(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	phone := s.Register(t, "dave", "pw")
	c := s.Client(t)
	r := c.Must(200, "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "dave"},
		"password": "pw", "device_id": "LAPTOP", "initial_device_display_name": "Dave's laptop",
	})
	laptop := s.Client(t)
	laptop.Token = r.Str("access_token")
	if r.Str("device_id") != "LAPTOP" {
		t.Fatalf("device_id not honoured: %s", r)
	}

	r = phone.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	devs, _ := r.JSON["devices"].([]any)
	if len(devs) != 2 {
		t.Fatalf("devices: %s", r)
	}
	r = phone.Must(200, "GET", "/_matrix/client/v3/devices/LAPTOP", nil)
	if r.Str("display_name") != "Dave's laptop" || r.Str("device_id") != "LAPTOP" || r.JSON["last_seen_ts"] == nil || r.Str("last_seen_ip") != "127.0.0.1" {
		t.Fatalf("device: %s", r)
	}
	phone.Must(200, "PUT", "/_matrix/client/v3/devices/LAPTOP", map[string]any{"display_name": "Old laptop"})
	if r := phone.Must(200, "GET", "/_matrix/client/v3/devices/LAPTOP", nil); r.Str("display_name") != "Old laptop" {
		t.Fatalf("rename: %s", r)
	}
	if r := phone.Do("GET", "/_matrix/client/v3/devices/NOPE", nil); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
		t.Fatalf("unknown device: %s", r)
	}
	if r := phone.Do("PUT", "/_matrix/client/v3/devices/NOPE", map[string]any{"display_name": "x"}); r.Status != 404 {
		t.Fatalf("rename unknown device: %s", r)
	}

	// Another user's devices are invisible.
	eve := s.Register(t, "eve", "pw")
	if r := eve.Do("GET", "/_matrix/client/v3/devices/LAPTOP", nil); r.Status != 404 {
		t.Fatalf("eve sees dave's device: %s", r)
	}

	// Deletion asks for the password, then the laptop's token is dead.
	r = phone.Must(401, "DELETE", "/_matrix/client/v3/devices/LAPTOP", map[string]any{})
	laptop.Must(200, "GET", "/_matrix/client/v3/account/whoami", nil)
	phone.Must(200, "DELETE", "/_matrix/client/v3/devices/LAPTOP", map[string]any{
		"auth": servertest.PasswordAuth(r.Str("session"), "dave", "pw"),
	})
	if r := laptop.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.Errcode() != "M_UNKNOWN_TOKEN" {
		t.Fatalf("deleted device's token: %s", r)
	}
	if r := phone.Do("GET", "/_matrix/client/v3/devices/LAPTOP", nil); r.Status != 404 {
		t.Fatalf("deleted device still listed: %s", r)
	}

	// POST /delete_devices removes several at once, skipping unknown IDs.
	t1, t2 := s.Login(t, "dave", "pw"), s.Login(t, "dave", "pw")
	r = phone.Must(401, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{t1.DeviceID, t2.DeviceID, "GONE"}})
	phone.Must(200, "POST", "/_matrix/client/v3/delete_devices", map[string]any{
		"devices": []string{t1.DeviceID, t2.DeviceID, "GONE"},
		"auth":    servertest.PasswordAuth(r.Str("session"), "dave", "pw"),
	})
	for _, c := range []*servertest.Client{t1, t2} {
		if r := c.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
			t.Errorf("token of bulk-deleted device: %s", r)
		}
	}
	r = phone.Must(200, "GET", "/_matrix/client/v3/devices", nil)
	if devs, _ := r.JSON["devices"].([]any); len(devs) != 1 {
		t.Fatalf("after bulk delete: %s", r)
	}
	if r := phone.Do("POST", "/_matrix/client/v3/delete_devices", map[string]any{}); r.Status != 400 || r.Errcode() != "M_MISSING_PARAM" {
		t.Fatalf("delete_devices without devices: %s", r)
	}
}
