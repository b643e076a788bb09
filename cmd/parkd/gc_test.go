package main

import "testing"

// parkd's collector defaults apply unless the operator set GOGC or
// GOMEMLIMIT: then parkd sets neither. A GOGC Go cannot read is refused,
// naming it.
func TestGCDefaultsYieldToTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		set     bool
		refused bool
	}{
		{nil, true, false},
		{map[string]string{"GOGC": "100"}, false, false},
		{map[string]string{"GOGC": "off"}, false, false},
		{map[string]string{"GOMEMLIMIT": "1GiB"}, false, false},
		{map[string]string{"GOGC": "200", "GOMEMLIMIT": "512MiB"}, false, false},
		{map[string]string{"GOGC": "abc"}, false, true},
		{map[string]string{"GOGC": "40%"}, false, true},
	} {
		p, l, ok, err := gcDefaults(func(k string) string { return c.env[k] })
		if (err != nil) != c.refused || ok != c.set {
			t.Errorf("env %v: set %v, err %v; want set %v, refused %v", c.env, ok, err, c.set, c.refused)
		}
		if ok && (p != defaultGCPercent || l != defaultMemoryLimit) {
			t.Errorf("env %v: percent %d, limit %d", c.env, p, l)
		}
	}
	if defaultGCPercent <= 100 || defaultMemoryLimit > 150<<20 {
		t.Errorf("defaults %d%%, %d bytes: want a percent above Go's 100 and a limit within the 150 MB parkd is held to", defaultGCPercent, defaultMemoryLimit)
	}
}
