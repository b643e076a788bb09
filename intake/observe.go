package intake

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Observer is told how each HTTP request went, for metrics. The Prometheus
// implementation lives apart (package metrics), as the worker's does.
type Observer interface {
	// HTTPDone: a request to route (the mux pattern without its method, such as
	// "/v1/sessions/{session_id}"; "unmatched" when no route took it) was
	// answered with status after took.
	HTTPDone(route, method string, status int, took time.Duration)
}

type routeKey struct{}

// instrument labels each request with its route, for the logs and the
// Observer. The label is the mux's pattern, never the raw path, so that there
// are as many label values as routes, whatever IDs clients send.
func (s *Server) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		route := routeOf(pattern)
		r = r.WithContext(context.WithValue(r.Context(), routeKey{}, route))
		if s.Observer == nil {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		began := time.Now()
		defer func() { s.Observer.HTTPDone(route, methodOf(r.Method), sw.code(), time.Since(began)) }()
		next.ServeHTTP(sw, r)
	})
}

// routeOf drops the method of a pattern ("GET /v1/rights" -> "/v1/rights"): the
// method is a label of its own.
func routeOf(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// methodOf keeps the method label to the methods HTTP defines: a client may
// send any token there.
func methodOf(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 { // 1xx are interim answers
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer (Flush,
// deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK // nothing written: net/http answers 200
	}
	return w.status
}
