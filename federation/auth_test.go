package federation

import "testing"

func TestParseXMatrix(t *testing.T) {
	cases := []struct {
		header string
		want   xMatrix
		ok     bool
	}{
		{`X-Matrix origin="a.org",destination="b.org",key="ed25519:k",sig="c2ln"`, xMatrix{"a.org", "b.org", "ed25519:k", "c2ln"}, true},
		{`X-Matrix origin=a.org,key="ed25519:k",sig="c2ln"`, xMatrix{"a.org", "", "ed25519:k", "c2ln"}, true},
		{`x-matrix origin="a.org", key="ed25519:k", sig="c2ln"`, xMatrix{"a.org", "", "ed25519:k", "c2ln"}, true},
		{`X-Matrix origin="a\"b",key="ed25519:k",sig="s"`, xMatrix{`a"b`, "", "ed25519:k", "s"}, true},
		{`X-Matrix origin="a.org",key="ed25519:k"`, xMatrix{}, false},
		{`X-Matrix origin="a.org,key="ed25519:k",sig="s`, xMatrix{}, false},
		{`Bearer abc`, xMatrix{}, false},
		{``, xMatrix{}, false},
	}
	for _, tc := range cases {
		got, ok := parseXMatrix(tc.header)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseXMatrix(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}
