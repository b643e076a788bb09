package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A 202 is followed up at /v1/requests/{id} until the outcome is there.
func TestWriteFollowsPending(t *testing.T) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/permits/7/sessions":
			if r.Header.Get("Idempotency-Key") != "k1" || r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"request_id":"k1","status":"pending"}`))
		case r.URL.Path == "/v1/requests/k1":
			if polls.Add(1) < 3 {
				_, _ = w.Write([]byte(`{"request_id":"k1","status":"pending"}`))
				return
			}
			_, _ = w.Write([]byte(`{"request_id":"k1","status":"applied","result":{"id":"42"}}`))
		case r.URL.Path == "/v1/permits/8/sessions":
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"error":{"code":"plate_already_parked","message":"x"}}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"x"}}`))
		}
	}))
	defer srv.Close()
	a := NewClient(srv.URL, 4)
	ctx := context.Background()

	o, err := a.Write(ctx, http.MethodPost, "/v1/permits/7/sessions", "tok", "k1", map[string]string{"plate": "AB-123-C"}, 5*time.Second)
	if err != nil || !o.Applied || !o.Pending || polls.Load() != 3 {
		t.Fatalf("pending write: %+v, %v after %d polls", o, err, polls.Load())
	}
	if id, err := IDOf(o.Result); err != nil || id != "42" {
		t.Fatalf("id %q, %v", id, err)
	}

	o, err = a.Write(ctx, http.MethodPost, "/v1/permits/8/sessions", "tok", "k2", map[string]string{}, time.Second)
	if err != nil || o.Applied || o.Code != "plate_already_parked" {
		t.Fatalf("rejected write: %+v, %v", o, err)
	}

	_, err = a.Write(ctx, http.MethodPost, "/v1/other", "tok", "k3", nil, time.Second)
	if got := FailureKind(err); got != "503 unavailable" {
		t.Fatalf("failure kind %q (%v)", got, err)
	}
	srv.Close()
	_, err = a.Write(ctx, http.MethodPost, "/v1/other", "tok", "k4", nil, time.Second)
	if got := FailureKind(err); got != "transport: connection refused" {
		t.Fatalf("failure kind after close %q (%v)", got, err)
	}
}

func TestPartitionIsDisjoint(t *testing.T) {
	rs := make([]Resident, 10)
	for i := range rs {
		rs[i].PermitID = string(rune('a' + i))
	}
	parts := Partition(rs, 4)
	seen := map[string]bool{}
	for _, p := range parts {
		for _, r := range p {
			if seen[r.PermitID] {
				t.Fatalf("permit %s in two users", r.PermitID)
			}
			seen[r.PermitID] = true
		}
	}
	if len(parts) != 4 || len(seen) != 10 {
		t.Fatalf("%d users, %d permits", len(parts), len(seen))
	}
	if got := len(Partition(rs, 50)); got != 10 {
		t.Fatalf("more users than permits: %d users", got)
	}
}

// A spread client sends its requests to its intakes in turn, as a load
// balancer would, the retries of one key included.
func TestSpreadClientTakesIntakesInTurn(t *testing.T) {
	var hits [2]atomic.Int32
	var srvs []*httptest.Server
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer srv.Close()
		srvs = append(srvs, srv)
	}
	a := NewSpreadClient([]string{srvs[0].URL, srvs[1].URL + "/"}, 4)
	defer a.Close()
	for range 5 {
		an, err := a.Do(context.Background(), http.MethodPost, "/v1/permits/7/sessions", "tok", "k1", map[string]any{})
		if err != nil || an.Status != http.StatusServiceUnavailable {
			t.Fatalf("answer %+v, %v", an, err)
		}
	}
	if hits[0].Load() != 3 || hits[1].Load() != 2 {
		t.Fatalf("hits %d and %d, want 3 and 2", hits[0].Load(), hits[1].Load())
	}
}
