package intake

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"
)

// Pinger is a dependency that /readyz checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingFunc adapts a function to Pinger.
type PingFunc func(ctx context.Context) error

// Ping implements Pinger.
func (f PingFunc) Ping(ctx context.Context) error { return f(ctx) }

// Health serves /healthz (200 while the process runs) and /readyz, as
// openapi.yaml says: 503 until every dependency has answered (within a
// second), 200 from then on. A later outage leaves /readyz at 200: the API
// answers it itself, with 503 unavailable per request, which a client can act
// on; a readiness that followed the dependencies would take every intake out
// of its load balancer at once and leave clients the balancer's bare error
// instead. /readyz still shows each dependency as it is now, for people. Each
// call to Health has its own readiness.
func Health(deps map[string]Pinger) http.Handler {
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		all, checks := true, map[string]string{}
		for name, d := range deps {
			if err := d.Ping(ctx); err != nil {
				all, checks[name] = false, "unavailable: "+err.Error()
			} else {
				checks[name] = "ok"
			}
		}
		if all {
			ready.Store(true)
		}
		status := http.StatusOK
		if !ready.Load() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
