// Package npr is a local stand-in for the national parking register (NPR),
// for development, tests and the chaos run: it speaks the registrar protocol
// of README "Pointing parkd at a register" as a register would, keeping the
// highest version of each right, and answers enforcement's question (is there
// a right for this plate in this area at this instant). Its fault knobs make
// it the register parkd must survive: slow, failing, acknowledging into the
// void, and letting an older version arrive after a newer one.
//
// It is an http.Handler:
//
//	PUT /rights/{right_id}    store a right: 201 the first version, 200 a newer or
//	                          equal one, 409 an older one (with the version held);
//	                          401 without the bearer token (when one is set), 400
//	                          a body that is not a right
//	GET /rights/{right_id}    the right held, or 404
//	GET /rights               {"rights": [...]}, every right held, by ID
//	GET /enforcement?plate=P&area=A[&at=RFC3339]
//	                          {"valid": bool, "right": right or null}: a right not
//	                          cancelled for plate P in area A covering at (now)
//
// It imports nothing of parkd: it checks the wire, not parkd's idea of it.
package npr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Right is a right as the protocol carries it.
type Right struct {
	RightID       string    `json:"right_id"`
	Version       int       `json:"version"`
	Issuer        string    `json:"issuer"`
	AreaManagerID string    `json:"area_manager_id"`
	AreaID        string    `json:"area_id"`
	UsageID       string    `json:"usage_id"`
	Plate         string    `json:"plate"`
	Country       string    `json:"country"`
	StartAt       time.Time `json:"start_at"`
	EndAt         time.Time `json:"end_at"`
	Status        string    `json:"status"` // active, ended or cancelled
}

// Faults are the register's misbehaviours; the zero value is a register that
// behaves. Shares are from 0 (never) to 1 (always), drawn per PUT.
type Faults struct {
	// Latency is added before every answer.
	Latency time.Duration
	// Fail is the share of PUTs answered 503 before anything is stored.
	Fail float64
	// LoseAck is the share of PUTs stored and then not acknowledged: answered
	// 500, or the connection closed without an answer (half each).
	LoseAck float64
	// Reorder is the share of PUTs held back for a random while up to Hold
	// before they are looked at, so that later ones overtake them.
	Reorder float64
	// Hold is the longest a reordered PUT is held; 0 is DefaultHold.
	Hold time.Duration
}

// DefaultHold is how long a reordered PUT is held at most.
const DefaultHold = 2 * time.Second

// Check says what is wrong with the knobs, or nil.
func (f Faults) Check() error {
	var errs []error
	for _, s := range []struct {
		name  string
		share float64
	}{{"fail", f.Fail}, {"lose-ack", f.LoseAck}, {"reorder", f.Reorder}} {
		if !(s.share >= 0 && s.share <= 1) {
			errs = append(errs, fmt.Errorf("%s share %v: want 0 to 1", s.name, s.share))
		}
	}
	if f.Latency < 0 || f.Hold < 0 {
		errs = append(errs, errors.New("latency and hold cannot be negative"))
	}
	return errors.Join(errs...)
}

// Options configure a Register.
type Options struct {
	// Token, when set, is the bearer token every PUT must carry (401 without).
	Token string
	Faults
	// Seed seeds the fault draws (0: a random seed), so a test can repeat them.
	Seed uint64
	// Now is the clock enforcement queries without at= use (nil: time.Now).
	Now func() time.Time
}

// Stats counts what the register was asked and answered.
type Stats struct {
	Puts         int `json:"puts"`         // PUTs received
	Created      int `json:"created"`      // 201: a right's first version
	Updated      int `json:"updated"`      // 200: a newer or equal version
	Stale        int `json:"stale"`        // 409: an older version than the one held
	Unauthorized int `json:"unauthorized"` // 401
	Invalid      int `json:"invalid"`      // 400
	Failed       int `json:"failed"`       // 503 injected before storing
	AcksLost     int `json:"acks_lost"`    // stored, then 500 or the connection closed
	Held         int `json:"held"`         // held back to be overtaken
}

// Snapshot is the register's state at one instant.
type Snapshot struct {
	Rights map[string]Right // by right ID: the highest version held
	// Stored is, by right ID and version, the instant (Options.Now) that
	// version was first stored: when the register first held it, whether or
	// not its sender heard so. A version that arrived after a newer one was
	// never stored and is absent.
	Stored map[string]map[int]time.Time
	Stats  Stats
}

// Register is the emulated register. It is safe for concurrent use.
type Register struct {
	token string
	now   func() time.Time
	mux   *http.ServeMux

	mu     sync.Mutex
	faults Faults
	rnd    *rand.Rand
	rights map[string]Right
	stored map[string]map[int]time.Time
	stats  Stats
}

// New makes an empty register; its faults must pass Faults.Check.
func New(o Options) (*Register, error) {
	if err := o.Faults.Check(); err != nil {
		return nil, err
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	r := &Register{token: o.Token, now: now, faults: o.Faults, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rights: map[string]Right{}, stored: map[string]map[int]time.Time{}, mux: http.NewServeMux()}
	r.mux.HandleFunc("PUT /rights/{id}", r.put)
	r.mux.HandleFunc("GET /rights/{id}", r.get)
	r.mux.HandleFunc("GET /rights", r.list)
	r.mux.HandleFunc("GET /enforcement", r.enforcement)
	return r, nil
}

// SetFaults changes the fault knobs from now on (the chaos run turns them up
// and down under load).
func (r *Register) SetFaults(f Faults) error {
	if err := f.Check(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = f
	return nil
}

// Snapshot copies the rights held and the counts.
func (r *Register) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	rights := make(map[string]Right, len(r.rights))
	for id, rt := range r.rights {
		rights[id] = rt
	}
	stored := make(map[string]map[int]time.Time, len(r.stored))
	for id, vs := range r.stored {
		stored[id] = maps.Clone(vs)
	}
	return Snapshot{Rights: rights, Stored: stored, Stats: r.stats}
}

// ServeHTTP serves the protocol (see the package comment).
func (r *Register) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if lat := r.knobs().Latency; lat > 0 && !pause(req, lat) {
		return
	}
	r.mux.ServeHTTP(w, req)
}

func (r *Register) knobs() Faults {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults
}

// draw reports whether an event of this share happens now.
func (r *Register) draw(share float64) bool {
	if share <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rnd.Float64() < share
}

// pause waits d, or less if the client goes away; it reports whether the
// client is still there.
func pause(req *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-req.Context().Done():
		return false
	}
}

func (r *Register) count(f func(*Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

func (r *Register) put(w http.ResponseWriter, req *http.Request) {
	r.count(func(s *Stats) { s.Puts++ })
	if r.token != "" && req.Header.Get("Authorization") != "Bearer "+r.token {
		r.count(func(s *Stats) { s.Unauthorized++ })
		msg := "an Authorization: Bearer token is required"
		if req.Header.Get("Authorization") != "" {
			msg = "the bearer token is not this register's"
		}
		writeError(w, http.StatusUnauthorized, "unauthenticated", msg)
		return
	}
	right, err := decodeRight(req, req.PathValue("id"))
	if err != nil {
		r.count(func(s *Stats) { s.Invalid++ })
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f := r.knobs()
	if r.draw(f.Reorder) {
		r.count(func(s *Stats) { s.Held++ })
		hold := f.Hold
		if hold <= 0 {
			hold = DefaultHold
		}
		r.mu.Lock()
		d := time.Duration(r.rnd.Int64N(int64(hold) + 1))
		r.mu.Unlock()
		if !pause(req, d) {
			return
		}
	}
	if r.draw(f.Fail) {
		r.count(func(s *Stats) { s.Failed++ })
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the register is busy: try again")
		return
	}
	status, held := r.store(right)
	if r.draw(f.LoseAck) {
		r.count(func(s *Stats) { s.AcksLost++ })
		if r.draw(0.5) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		writeError(w, http.StatusInternalServerError, "internal", "the answer was lost")
		return
	}
	if status == http.StatusConflict {
		writeJSON(w, status, map[string]any{"error": map[string]string{"code": "version_conflict",
			"message": fmt.Sprintf("version %d is older than the version %d held", right.Version, held.Version)}, "version": held.Version})
		return
	}
	writeJSON(w, status, held)
}

// store keeps right if it is the first of its ID or at least as new as the
// one held, and answers with the status and the right now held.
func (r *Register) store(right Right) (int, Right) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.rights[right.RightID]
	if !ok || right.Version >= old.Version {
		vs := r.stored[right.RightID]
		if vs == nil {
			vs = map[int]time.Time{}
			r.stored[right.RightID] = vs
		}
		if _, seen := vs[right.Version]; !seen {
			vs[right.Version] = r.now()
		}
	}
	switch {
	case !ok:
		r.rights[right.RightID] = right
		r.stats.Created++
		return http.StatusCreated, right
	case right.Version >= old.Version:
		r.rights[right.RightID] = right
		r.stats.Updated++
		return http.StatusOK, right
	default:
		r.stats.Stale++
		return http.StatusConflict, old
	}
}

// decodeRight reads a PUT's body: exactly the protocol's fields, each present
// and well-formed.
func decodeRight(req *http.Request, id string) (Right, error) {
	var raw map[string]json.RawMessage
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, 64<<10))
	if err != nil {
		return Right{}, fmt.Errorf("body: %v", err)
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Right{}, fmt.Errorf("body is not a JSON object: %v", err)
	}
	var missing []string
	for _, f := range []string{"right_id", "version", "issuer", "area_manager_id", "area_id", "usage_id",
		"plate", "country", "start_at", "end_at", "status"} {
		if v, ok := raw[f]; !ok || string(v) == "null" {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return Right{}, fmt.Errorf("missing or null: %s", strings.Join(missing, ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var rt Right
	if err := dec.Decode(&rt); err != nil {
		return Right{}, fmt.Errorf("body: %v", err)
	}
	switch {
	case rt.RightID != id:
		return rt, fmt.Errorf("right_id %q is not the %q of the URL", rt.RightID, id)
	case rt.Version < 1:
		return rt, fmt.Errorf("version %d: want 1 or more", rt.Version)
	case rt.Issuer == "" || rt.AreaManagerID == "" || rt.AreaID == "" || rt.UsageID == "" || rt.Country == "":
		return rt, errors.New("issuer, area_manager_id, area_id, usage_id and country must not be empty")
	case normalPlate(rt.Plate) == "":
		return rt, errors.New("plate has no letters or digits")
	case len(normalPlate(rt.Plate)) >= 4 && strings.Contains(normalPlate(rt.RightID), normalPlate(rt.Plate)):
		return rt, errors.New("right_id carries the plate: it must be opaque")
	case rt.EndAt.Before(rt.StartAt):
		return rt, fmt.Errorf("end_at %s is before start_at %s", rt.EndAt.Format(time.RFC3339), rt.StartAt.Format(time.RFC3339))
	case !slices.Contains([]string{"active", "ended", "cancelled"}, rt.Status):
		return rt, fmt.Errorf("status %q: want active, ended or cancelled", rt.Status)
	}
	return rt, nil
}

func (r *Register) get(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	rt, ok := r.rights[req.PathValue("id")]
	r.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no right with this ID")
		return
	}
	writeJSON(w, http.StatusOK, rt)
}

func (r *Register) list(w http.ResponseWriter, _ *http.Request) {
	snap := r.Snapshot()
	out := make([]Right, 0, len(snap.Rights))
	for _, rt := range snap.Rights {
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b Right) int { return strings.Compare(a.RightID, b.RightID) })
	writeJSON(w, http.StatusOK, map[string]any{"rights": out})
}

// Enforcement is the answer to an enforcement query.
type Enforcement struct {
	Valid bool   `json:"valid"`
	Right *Right `json:"right"`
}

func (r *Register) enforcement(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	plate, area := normalPlate(q.Get("plate")), q.Get("area")
	if plate == "" || area == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "plate and area are required")
		return
	}
	at := r.now()
	if s := q.Get("at"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "at: want an RFC 3339 instant such as 2026-11-30T14:00:00Z")
			return
		}
		at = t
	}
	writeJSON(w, http.StatusOK, r.Check(plate, area, at))
}

// Check answers enforcement's question: the right, not cancelled, of plate in
// area (its area_id) whose interval [start_at, end_at) covers at; the one
// that started last when several do.
func (r *Register) Check(plate, area string, at time.Time) Enforcement {
	plate = normalPlate(plate)
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *Right
	for _, rt := range r.rights {
		if normalPlate(rt.Plate) != plate || rt.AreaID != area || rt.Status == "cancelled" ||
			at.Before(rt.StartAt) || !at.Before(rt.EndAt) {
			continue
		}
		if best == nil || rt.StartAt.After(best.StartAt) {
			c := rt
			best = &c
		}
	}
	return Enforcement{Valid: best != nil, Right: best}
}

// normalPlate is a plate as registers compare them: letters and digits only,
// in capitals.
func normalPlate(s string) string {
	var b strings.Builder
	for _, c := range s {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(unicode.ToUpper(c))
		}
	}
	return b.String()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
