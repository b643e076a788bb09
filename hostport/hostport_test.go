package hostport_test

import (
	"testing"

	"github.com/parkd/parkd/hostport"
)

func TestCheckHost(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"h", true},
		{"h:1", true},
		{"h:8080", true},
		{"h:65535", true},
		{"[::1]", true},
		{"[::1]:6379", true},
		{"127.0.0.1:5432", true},
		{"", true},
		{"h:0", false},
		{"h:00", false},
		{"h:65536", false},
		{"h:99999", false},
		{"h:18446744073709551617", false},
		{"h:", false},
		{"[::1]:", false},
		{"[::1]:0", false},
		{"h:+80", false},
		{"h:-1", false},
		{"h:http", false},
	} {
		if err := hostport.CheckHost(c.host); (err == nil) != c.ok {
			t.Errorf("CheckHost(%q) = %v", c.host, err)
		}
	}
}
