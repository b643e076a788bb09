package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// `parkd worker` with PARKD_REGISTRAR_URL, _TOKEN and _ISSUER serves the
// registrar queue with its own server: a right:register task is sent to the
// register with the token, under the configured issuer, retried past a 503,
// recorded on the session, and counted in the metrics.
func TestWorkerRegistersRightsWithTheRegistrar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a parkd process")
	}
	w := newWorld(t, 1, 5)
	var mu sync.Mutex
	var got []worker.Right
	var auth []string
	npr := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var right worker.Right
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &right)
		mu.Lock()
		defer mu.Unlock()
		got, auth = append(got, right), append(auth, r.Header.Get("Authorization"))
		if len(got) == 1 {
			rw.WriteHeader(http.StatusServiceUnavailable) // the first try fails
			return
		}
		rw.WriteHeader(http.StatusCreated)
	}))
	defer npr.Close()

	port := freePort(t)
	startParkd(t, append(w.env, "PARKD_REGISTRAR_URL="+npr.URL, "PARKD_REGISTRAR_TOKEN=npr-secret",
		"PARKD_REGISTRAR_ISSUER=gem0363", fmt.Sprintf("PARKD_METRICS_ADDR=127.0.0.1:%d", port)), "worker")

	start, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: "reg-start", PermitID: w.permits[0], Plate: "RG-99-ZZ"})
	if err != nil {
		t.Fatal(err)
	}
	w.enqueue(start)
	w.waitOutcomes(jobs.TypeSessionStart, 1, 30*time.Second)
	var sessions []repo.Session
	if err := w.store.DB.NewSelect().Model(&sessions).Scan(w.ctx); err != nil || len(sessions) != 1 {
		t.Fatalf("sessions %v %v", sessions, err)
	}
	s := sessions[0]
	v := repotest.MarkRightChanged(t, w.store, s.ID, domain.ZoneRegistration{AreaManagerID: "363", AreaID: "OOST", UsageID: "BEZOEKP"},
		time.Now())
	w.enqueue(jobs.NewRightRegister(repo.FormatID(s.ID), v))

	waitUntil(t, 30*time.Second, "the right registered", func() bool {
		row, err := repo.GetSession(w.ctx, w.store.DB, s.ID)
		return err == nil && row.RegistrationView().Status == jobs.RegistrationRegistered
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[1].RightID != "gem0363-"+repo.FormatID(s.ID) || got[1].Issuer != "gem0363" ||
		got[1].Version != v || got[1].Plate != "RG99ZZ" || auth[1] != "Bearer npr-secret" {
		t.Fatalf("the register got %+v with %q", got, auth)
	}
	if n := scrape(t, port, "parkd_registrations_total", `outcome="acknowledged"`); n != 1 {
		t.Errorf("parkd_registrations_total{outcome=acknowledged} = %d, want 1", n)
	}
	if n := scrape(t, port, "parkd_registrations_total", `outcome="retried"`); n != 1 {
		t.Errorf("parkd_registrations_total{outcome=retried} = %d, want 1", n)
	}
	if n := scrape(t, port, "parkd_rights_pending "); n != 0 {
		t.Errorf("parkd_rights_pending = %d, want 0", n)
	}
}
