package main

import "testing"

// parkd's collector defaults apply unless the operator set GOGC or
// GOMEMLIMIT, each on its own.
func TestGCDefaultsYieldToTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		percent int
		limit   int64
	}{
		{nil, defaultGCPercent, defaultMemoryLimit},
		{map[string]string{"GOGC": "100"}, -1, defaultMemoryLimit},
		{map[string]string{"GOGC": "off"}, -1, defaultMemoryLimit},
		{map[string]string{"GOMEMLIMIT": "1GiB"}, defaultGCPercent, -1},
		{map[string]string{"GOGC": "200", "GOMEMLIMIT": "512MiB"}, -1, -1},
	} {
		p, l := gcDefaults(func(k string) string { return c.env[k] })
		if p != c.percent || l != c.limit {
			t.Errorf("env %v: percent %d, limit %d; want %d, %d", c.env, p, l, c.percent, c.limit)
		}
	}
	if defaultGCPercent <= 100 || defaultMemoryLimit > 150<<20 {
		t.Errorf("defaults %d%%, %d bytes: want a percent above Go's 100 and a limit within the 150 MB parkd is held to", defaultGCPercent, defaultMemoryLimit)
	}
}
