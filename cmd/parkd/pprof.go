package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves Go's profiler on addr (PARKD_PPROF_ADDR), on its own mux so
// that it never shows up on the API's port:
//
//	PARKD_PPROF_ADDR=127.0.0.1:6060 parkd serve
//	go tool pprof -seconds 20 http://127.0.0.1:6060/debug/pprof/profile
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil {
			log.Warn("pprof server stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("pprof listening", "addr", addr)
}
