package npr_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/tools/npr"
)

var t0 = time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)

func right(id string, version int, plate, status string) npr.Right {
	return npr.Right{RightID: id, Version: version, Issuer: "parkd", AreaManagerID: "363", AreaID: "OOST", UsageID: "BEZOEKP",
		Plate: plate, Country: "NL", StartAt: t0, EndAt: t0.Add(2 * time.Hour), Status: status}
}

type emulator struct {
	t   *testing.T
	reg *npr.Register
	url string
}

func start(t *testing.T, o npr.Options) *emulator {
	t.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return t0.Add(time.Hour) }
	}
	reg, err := npr.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &emulator{t: t, reg: reg, url: srv.URL}
}

// put sends a right (or any body) as parkd does; it returns the status, or 0
// with the error when no answer came.
func (e *emulator) put(id string, body any, token string) (int, string, error) {
	e.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPut, e.url+"/rights/"+id, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out), nil
}

func (e *emulator) get(path string, into any) int {
	e.t.Helper()
	res, err := http.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if into != nil {
		if err := json.NewDecoder(res.Body).Decode(into); err != nil {
			e.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return res.StatusCode
}

// The register keeps the highest version: 201 for a right's first version,
// 200 for a newer or equal one, 409 (naming the version held) for an older
// one, which changes nothing.
func TestRegisterKeepsTheHighestVersion(t *testing.T) {
	e := start(t, npr.Options{})
	for _, c := range []struct {
		version, status int
	}{{1, 201}, {3, 200}, {2, 409}, {3, 200}, {1, 409}, {4, 200}} {
		st, body, err := e.put("parkd-17", right("parkd-17", c.version, "AB12CD", "active"), "")
		if err != nil || st != c.status {
			t.Fatalf("version %d: %d %s %v, want %d", c.version, st, body, err, c.status)
		}
		if st == 409 && !strings.Contains(body, `"version":`) {
			t.Errorf("409 does not name the version held: %s", body)
		}
	}
	var got npr.Right
	if st := e.get("/rights/parkd-17", &got); st != 200 || got.Version != 4 {
		t.Fatalf("GET: %d %+v", st, got)
	}
	e.put("parkd-18", right("parkd-18", 1, "XY99ZZ", "active"), "")
	var all struct{ Rights []npr.Right }
	if st := e.get("/rights", &all); st != 200 || len(all.Rights) != 2 || all.Rights[0].RightID != "parkd-17" || all.Rights[1].RightID != "parkd-18" {
		t.Fatalf("GET /rights: %d %+v", st, all)
	}
	if st := e.get("/rights/parkd-99", nil); st != 404 {
		t.Fatalf("GET of an unknown right: %d", st)
	}
	s := e.reg.Snapshot().Stats
	if s.Puts != 7 || s.Created != 2 || s.Updated != 3 || s.Stale != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// Stored keeps the instant each version was first stored: a repeat keeps the
// first instant, and a version older than the one held is never stored.
func TestRegisterRecordsWhenEachVersionWasFirstStored(t *testing.T) {
	now := t0
	e := start(t, npr.Options{Now: func() time.Time { return now }})
	for _, c := range []struct {
		version int
		at      time.Duration
	}{{1, 0}, {1, time.Second}, {3, 2 * time.Second}, {2, 3 * time.Second}, {3, 4 * time.Second}, {4, 5 * time.Second}} {
		now = t0.Add(c.at)
		e.put("parkd-17", right("parkd-17", c.version, "AB12CD", "active"), "")
	}
	got := e.reg.Snapshot().Stored["parkd-17"]
	want := map[int]time.Time{1: t0, 3: t0.Add(2 * time.Second), 4: t0.Add(5 * time.Second)}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for v, at := range want {
		if !got[v].Equal(at) {
			t.Errorf("version %d first stored %v, want %v (all: %v)", v, got[v], at, got)
		}
	}
}

// With a token configured, a PUT without it, or with another, is 401 and
// stores nothing.
func TestRegisterChecksTheToken(t *testing.T) {
	e := start(t, npr.Options{Token: "s3cret"})
	for token, says := range map[string]string{"": "token is required", "wrong": "not this register's"} {
		if st, body, _ := e.put("parkd-1", right("parkd-1", 1, "AB12CD", "active"), token); st != 401 || !strings.Contains(body, says) {
			t.Fatalf("token %q: %d %s, want 401 saying %q", token, st, body, says)
		}
	}
	if st, _, _ := e.put("parkd-1", right("parkd-1", 1, "AB12CD", "active"), "s3cret"); st != 201 {
		t.Fatalf("with the token: %d", st)
	}
	if s := e.reg.Snapshot(); s.Stats.Unauthorized != 2 || len(s.Rights) != 1 {
		t.Fatalf("snapshot %+v", s)
	}
}

// A body that is not a right of the protocol is 400 and stores nothing.
func TestRegisterRefusesWhatIsNotARight(t *testing.T) {
	e := start(t, npr.Options{})
	good := right("parkd-5", 1, "AB12CD", "active")
	mutate := func(f func(*npr.Right)) npr.Right { r := good; f(&r); return r }
	for name, body := range map[string]any{
		"not JSON":             "plate=AB12CD",
		"an unknown field":     `{"right_id":"parkd-5","version":1,"issuer":"parkd","area_manager_id":"363","area_id":"OOST","usage_id":"B","plate":"AB12CD","country":"NL","start_at":"2026-11-30T13:00:00Z","end_at":"2026-11-30T14:00:00Z","status":"active","colour":"red"}`,
		"a null plate":         `{"right_id":"parkd-5","version":1,"issuer":"parkd","area_manager_id":"363","area_id":"OOST","usage_id":"B","plate":null,"country":"NL","start_at":"2026-11-30T13:00:00Z","end_at":"2026-11-30T14:00:00Z","status":"active"}`,
		"no status":            `{"right_id":"parkd-5","version":1,"issuer":"parkd","area_manager_id":"363","area_id":"OOST","usage_id":"B","plate":"AB12CD","country":"NL","start_at":"2026-11-30T13:00:00Z","end_at":"2026-11-30T14:00:00Z"}`,
		"another right's ID":   mutate(func(r *npr.Right) { r.RightID = "parkd-6" }),
		"version 0":            mutate(func(r *npr.Right) { r.Version = 0 }),
		"an empty area":        mutate(func(r *npr.Right) { r.AreaID = "" }),
		"an unknown status":    mutate(func(r *npr.Right) { r.Status = "paused" }),
		"an end before start":  mutate(func(r *npr.Right) { r.EndAt = r.StartAt.Add(-time.Minute) }),
		"an empty plate":       mutate(func(r *npr.Right) { r.Plate = " - " }),
		"the plate as the key": mutate(func(r *npr.Right) { r.RightID = "parkd-5"; r.Plate = "PARKD5" }),
	} {
		if st, body, err := e.put("parkd-5", body, ""); st != 400 || !strings.Contains(body, "bad_request") {
			t.Errorf("%s: %d %s %v", name, st, body, err)
		}
	}
	if s := e.reg.Snapshot(); len(s.Rights) != 0 || s.Stats.Invalid != 11 {
		t.Fatalf("snapshot %+v", s)
	}
}

// Enforcement's question: a right not cancelled for the plate (however it is
// written) in the area, covering the instant (now by default).
func TestEnforcementQuery(t *testing.T) {
	e := start(t, npr.Options{}) // now is t0 + 1 h
	e.put("parkd-1", right("parkd-1", 1, "AB12CD", "active"), "")
	ended := right("parkd-2", 2, "EN01DD", "ended")
	ended.EndAt = t0.Add(30 * time.Minute)
	e.put("parkd-2", ended, "")
	e.put("parkd-3", right("parkd-3", 2, "CA01NC", "cancelled"), "")
	for _, c := range []struct {
		query string
		valid bool
		id    string
	}{
		{"plate=AB12CD&area=OOST", true, "parkd-1"},
		{"plate=ab-12-cd&area=OOST", true, "parkd-1"},
		{"plate=AB12CD&area=CENTRUM", false, ""},
		{"plate=ZZ99ZZ&area=OOST", false, ""},
		{"plate=AB12CD&area=OOST&at=2026-11-30T12:59:59Z", false, ""}, // before its start
		{"plate=AB12CD&area=OOST&at=2026-11-30T15:00:00Z", false, ""}, // at its end
		{"plate=EN01DD&area=OOST", false, ""},                         // ended half an hour ago
		{"plate=EN01DD&area=OOST&at=2026-11-30T13:10:00Z", true, "parkd-2"},
		{"plate=CA01NC&area=OOST&at=2026-11-30T13:10:00Z", false, ""},
	} {
		var got npr.Enforcement
		if st := e.get("/enforcement?"+c.query, &got); st != 200 || got.Valid != c.valid ||
			(c.valid && (got.Right == nil || got.Right.RightID != c.id)) || (!c.valid && got.Right != nil) {
			t.Errorf("%s: %d %+v", c.query, st, got)
		}
	}
	for _, q := range []string{"area=OOST", "plate=AB12CD", "plate=AB12CD&area=OOST&at=yesterday"} {
		if st := e.get("/enforcement?"+q, nil); st != 400 {
			t.Errorf("%s: %d, want 400", q, st)
		}
	}
}

// Fail: a share of PUTs answered 503 before anything is stored.
func TestFaultFailStoresNothing(t *testing.T) {
	e := start(t, npr.Options{Faults: npr.Faults{Fail: 1}})
	if st, _, _ := e.put("parkd-1", right("parkd-1", 1, "AB12CD", "active"), ""); st != 503 {
		t.Fatalf("%d, want 503", st)
	}
	if s := e.reg.Snapshot(); len(s.Rights) != 0 || s.Stats.Failed != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	// Half: about half of them fail, drawn from the seed.
	e = start(t, npr.Options{Faults: npr.Faults{Fail: 0.5}, Seed: 7})
	for i := range 200 {
		id := fmt.Sprintf("parkd-%d", i)
		e.put(id, right(id, 1, "AB12CD", "active"), "")
	}
	if s := e.reg.Snapshot(); s.Stats.Failed < 60 || s.Stats.Failed > 140 || len(s.Rights) != 200-s.Stats.Failed {
		t.Fatalf("stats %+v, %d rights", s.Stats, len(s.Rights))
	}
}

// LoseAck: the right is stored, and the sender hears a 500 or nothing at all
// (the connection closed): it must send again, and then hears 200.
func TestFaultLoseAckStoresThenFails(t *testing.T) {
	e := start(t, npr.Options{Faults: npr.Faults{LoseAck: 1}, Seed: 3})
	var answered500, cut int
	for i := range 20 {
		id := fmt.Sprintf("parkd-%d", i)
		st, _, err := e.put(id, right(id, 1, "AB12CD", "active"), "")
		switch {
		case err != nil:
			cut++
		case st == 500:
			answered500++
		default:
			t.Fatalf("%s: %d, want 500 or no answer", id, st)
		}
	}
	if answered500 == 0 || cut == 0 {
		t.Errorf("%d answered 500, %d cut off: want both", answered500, cut)
	}
	if s := e.reg.Snapshot(); len(s.Rights) != 20 || s.Stats.AcksLost != 20 {
		t.Fatalf("stats %+v, %d rights: every one stored", s.Stats, len(s.Rights))
	}
	if err := e.reg.SetFaults(npr.Faults{}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.put("parkd-0", right("parkd-0", 1, "AB12CD", "active"), ""); st != 200 {
		t.Fatalf("sent again: %d, want 200", st)
	}
}

// Reorder: a held PUT is overtaken by a later one, and then finds a newer
// version held (409): the register keeps the newer.
func TestFaultReorderLetsALaterVersionOvertake(t *testing.T) {
	// Seed 1 draws a hold of several seconds out of Hold (the draws are
	// deterministic); the test waits for the held request rather than a time.
	e := start(t, npr.Options{Faults: npr.Faults{Reorder: 1, Hold: 10 * time.Second}, Seed: 1})
	var wg sync.WaitGroup
	var held int
	wg.Add(1)
	go func() {
		defer wg.Done()
		held, _, _ = e.put("parkd-1", right("parkd-1", 1, "AB12CD", "active"), "")
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.reg.Snapshot().Stats.Held == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first PUT was not held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.reg.SetFaults(npr.Faults{}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.put("parkd-1", right("parkd-1", 2, "AB12CD", "ended"), ""); st != 201 {
		t.Fatalf("the later version: %d, want 201 (it overtook the first)", st)
	}
	wg.Wait()
	if held != 409 {
		t.Fatalf("the held version 1: %d, want 409", held)
	}
	if s := e.reg.Snapshot(); s.Rights["parkd-1"].Version != 2 || s.Rights["parkd-1"].Status != "ended" {
		t.Fatalf("held %+v", s.Rights["parkd-1"])
	}
}

// Latency delays every answer.
func TestFaultLatency(t *testing.T) {
	e := start(t, npr.Options{Faults: npr.Faults{Latency: 150 * time.Millisecond}})
	began := time.Now()
	e.get("/rights", nil)
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Fatalf("answered after %s", took)
	}
}

func TestFaultsAreChecked(t *testing.T) {
	for _, f := range []npr.Faults{{Fail: 1.5}, {LoseAck: -0.1}, {Reorder: 2}, {Latency: -time.Second}} {
		if _, err := npr.New(npr.Options{Faults: f}); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}
