// Package hostport checks the port of a network address as parkd's
// configuration and its webhooks name one: a URL's host (PARKD_REGISTRAR_URL,
// PARKD_JWKS_URL, PARKD_REDIS_URL, PARKD_DATABASE_URL, a webhook's url) or a
// HOST:PORT. net/url takes any run of digits as a port (http://h:99999,
// http://h:0) and an empty one after the colon (http://h:/), and
// net.SplitHostPort takes any text: such an address is found wrong only when
// it is dialled, long after it was accepted, and every call then fails.
package hostport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CheckPort says what is wrong with a port, or nil: it must be a number from
// 1 to 65535, written with digits only.
func CheckPort(port string) error {
	if port == "" {
		return errors.New("an empty port after the colon: want a port from 1 to 65535, or no colon for the default")
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want a port from 1 to 65535", port)
	}
	return nil
}

// CheckHost says what is wrong with the port of a host as a URL writes it
// (url.URL.Host: "h", "h:8080", "[::1]:8080", "[::1]"), or nil: without a
// port it is fine (the scheme's default), with a colon it must be followed by
// a port CheckPort accepts.
func CheckHost(host string) error {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i < strings.LastIndexByte(host, ']') {
		return nil // no port: "h", "[::1]"
	}
	if !strings.HasPrefix(host, "[") && strings.Count(host, ":") > 1 {
		return nil // an IPv6 address without brackets has no port to check
	}
	return CheckPort(host[i+1:])
}
