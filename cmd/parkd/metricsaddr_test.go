package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/repo/repotest"
)

// PARKD_METRICS_ADDR (README "Configuration"): empty, /metrics (with /healthz
// and /readyz) is served on the HTTP port; set, on that address and not on the
// public port, for every role that has one: the intake, serve and the monitor.
func TestMetricsAddrTakesTheProbesOffThePublicPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts parkd processes")
	}
	_, dsn := repotest.NewDB(t)
	_, idx := repotest.NewRedis(t)
	env := []string{"PARKD_DATABASE_URL=" + dsn, "PARKD_REDIS_URL=" + repotest.RedisURL(idx), "PARKD_STARTUP_WAIT=10s"}
	noRedirect := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(port int, path string) (int, string) {
		res, err := noRedirect.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	type process struct {
		role               string
		metricsApart       bool
		public, metrics    int
		stillPublic        string // what the public port keeps serving
		stillPublicAnswers int
	}
	var procs []*process
	for _, c := range []struct {
		role, still string
		apart       bool
		answers     int
	}{
		{"intake", "/v1/openapi.yaml", true, http.StatusOK},
		{"serve", "/v1/openapi.yaml", true, http.StatusOK},
		{"monitor", "/", true, http.StatusFound}, // the console's redirect
		{"intake", "/v1/openapi.yaml", false, http.StatusOK},
	} {
		p := &process{role: c.role, metricsApart: c.apart, public: freePort(t), stillPublic: c.still, stillPublicAnswers: c.answers}
		penv := append(env[:len(env):len(env)], fmt.Sprintf("PARKD_HTTP_ADDR=127.0.0.1:%d", p.public))
		if c.apart {
			p.metrics = freePort(t)
			penv = append(penv, fmt.Sprintf("PARKD_METRICS_ADDR=127.0.0.1:%d", p.metrics))
		}
		startParkd(t, penv, c.role)
		procs = append(procs, p)
	}
	for _, p := range procs {
		name := fmt.Sprintf("%s apart=%v", p.role, p.metricsApart)
		t.Run(name, func(t *testing.T) {
			opsPort := p.public
			if p.metricsApart {
				opsPort = p.metrics
			}
			waitUntil(t, 30*time.Second, name+" ready", func() bool {
				code, _ := get(opsPort, "/readyz")
				return code == http.StatusOK
			})
			if code, body := get(opsPort, "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
				t.Errorf("/metrics on the ops port: %d %.200s", code, body)
			}
			if code, body := get(opsPort, "/healthz"); code != http.StatusOK {
				t.Errorf("/healthz on the ops port: %d %s", code, body)
			}
			if code, body := get(p.public, p.stillPublic); code != p.stillPublicAnswers {
				t.Errorf("%s on the public port: %d %.200s, want %d", p.stillPublic, code, body, p.stillPublicAnswers)
			}
			if !p.metricsApart {
				return
			}
			for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
				if code, body := get(p.public, path); code != http.StatusNotFound {
					t.Errorf("%s on the public port with PARKD_METRICS_ADDR set: %d %.200s, want 404", path, code, body)
				}
			}
			if code, body := get(p.metrics, "/v1/openapi.yaml"); code != http.StatusNotFound {
				t.Errorf("the API on the metrics port: %d %.200s, want 404", code, body)
			}
		})
	}
}
