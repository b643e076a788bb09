package intake_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/intake"
)

type httpCall struct {
	route, method string
	status        int
}

type fakeObserver struct {
	mu    sync.Mutex
	calls []httpCall
}

func (f *fakeObserver) HTTPDone(route, method string, status int, took time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, httpCall{route, method, status})
}

// The route label is the mux's pattern, whatever IDs the path holds, so that a
// client cannot grow the metrics; an unrouted request is "unmatched".
func TestObserverSeesRoutesNotPaths(t *testing.T) {
	obs := &fakeObserver{}
	s := &intake.Server{Secret: []byte("k"), Log: quietLog(), Observer: obs, RateLimit: -1}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	for _, c := range []struct {
		method, path string
		want         httpCall
	}{
		{"GET", "/v1/sessions/123", httpCall{"/v1/sessions/{session_id}", "GET", 401}},
		{"GET", "/v1/sessions/9999999", httpCall{"/v1/sessions/{session_id}", "GET", 401}},
		{"POST", "/v1/permits/7/sessions", httpCall{"/v1/permits/{permit_id}/sessions", "POST", 401}},
		{"GET", "/v1/rights?plate=AB12CD&zone=X", httpCall{"/v1/rights", "GET", 401}},
		{"GET", "/healthz", httpCall{"/healthz", "GET", 200}},
		{"GET", "/no/such/thing/42", httpCall{"unmatched", "GET", 404}},
		{"DELETE", "/v1/rights", httpCall{"unmatched", "DELETE", 405}},
		{"BREW", "/healthz", httpCall{"unmatched", "other", 405}},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		obs.mu.Lock()
		last := obs.calls[len(obs.calls)-1]
		obs.mu.Unlock()
		if last != c.want || res.StatusCode != c.want.status {
			t.Errorf("%s %s: observed %+v (answered %d), want %+v", c.method, c.path, last, res.StatusCode, c.want)
		}
	}
}
