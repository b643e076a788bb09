// Package receiver is a webhook receiver for the lab: an upstream app's
// endpoint as README "Events and webhooks: how an upstream app subscribes"
// describes it, on a real port of the loopback interface. It verifies every
// delivery's Standard Webhooks signature with the Standard Webhooks library
// (as an app would), records each event it accepted (the first receipt's
// instant and how often it came), and can be taken down: answering 503, or
// refusing connections altogether, and brought back on the same address.
//
// It imports nothing of parkd: it checks the wire, not parkd's idea of it.
package receiver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parkd/parkd/jobs"
)

// Mode is how the receiver answers.
type Mode string

const (
	// Up verifies and records deliveries: 204 for one accepted (a duplicate
	// too), 401 for a bad or missing signature, 400 for a body that is not
	// the event the headers name.
	Up Mode = "up"
	// Unavailable answers every request 503 without looking at it.
	Unavailable Mode = "503"
	// Refusing listens no more: connections are refused, and open ones
	// closed.
	Refusing Mode = "refusing"
)

// Event is a delivered event: the body parkd's contract gives it (jobs.Event,
// what upstream apps read it into).
type Event = jobs.Event

// Receipt is an event the receiver accepted: the event as first received,
// when, and how many times it was delivered (duplicates included).
type Receipt struct {
	Event
	FirstAt time.Time `json:"first_at"`
	Count   int       `json:"count"`
}

// Stats count what the receiver was sent and how it answered.
type Stats struct {
	Posts       int `json:"posts"`         // requests received while listening
	Accepted    int `json:"accepted"`      // answered 204: signature valid, event recorded
	Duplicates  int `json:"duplicates"`    // of those, an event already recorded
	Unavailable int `json:"unavailable"`   // answered 503 while Unavailable
	BadSig      int `json:"bad_signature"` // answered 401
	Malformed   int `json:"malformed"`     // answered 400 or 405
}

// Outage is a spell the receiver was not Up.
type Outage struct {
	Mode Mode      `json:"mode"`
	From time.Time `json:"from"`
	To   time.Time `json:"to,omitzero"` // zero while it lasts
}

// Seconds is the outage's length (until now while it lasts).
func (o Outage) Seconds() float64 {
	to := o.To
	if to.IsZero() {
		to = time.Now()
	}
	return to.Sub(o.From).Seconds()
}

// Snapshot is what the receiver has seen so far.
type Snapshot struct {
	Events map[string]Receipt `json:"-"` // by event ID
	Stats  Stats              `json:"stats"`
	// Refused lists the deliveries refused for their signature or body,
	// each with the event ID its headers named and why.
	Refused []string `json:"refused,omitempty"`
	// Changed lists duplicates whose body differed from the first receipt
	// (another sequence, type, session or data).
	Changed []string `json:"changed,omitempty"`
	Outages []Outage `json:"outages,omitempty"`
}

// maxBody bounds a delivery's body.
const maxBody = 1 << 20

// maxListed bounds Refused and Changed.
const maxListed = 1000

// Receiver is the webhook receiver. It is safe for concurrent use.
type Receiver struct {
	secret string
	wh     *standardwebhooks.Webhook
	now    func() time.Time
	addr   string

	mu      sync.Mutex
	mode    Mode
	srv     *http.Server
	closed  bool
	events  map[string]*Receipt
	stats   Stats
	refused []string
	changed []string
	outages []Outage
}

// NewSecret is a fresh secret in the Standard Webhooks form: whsec_ and the
// base64 of 32 random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// Start listens on addr ("" or "127.0.0.1:0": a free loopback port) and
// serves deliveries signed with secret.
func Start(addr, secret string) (*Receiver, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, fmt.Errorf("receiver: secret: %w", err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	r := &Receiver{secret: secret, wh: wh, now: time.Now, mode: Up, events: map[string]*Receipt{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	return r, nil
}

// serve serves ln with a server of its own (a closed http.Server cannot
// serve again). Called with r.mu held, or before r is shared.
func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

// URL is where deliveries go: http://ADDR/events.
func (r *Receiver) URL() string { return "http://" + r.addr + "/events" }

// Secret is the secret deliveries must be signed with.
func (r *Receiver) Secret() string { return r.secret }

// SetMode changes how the receiver answers from now on. Refusing closes the
// listener and every open connection; leaving it listens again on the same
// address.
func (r *Receiver) SetMode(m Mode) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("receiver: closed")
	}
	if m == r.mode {
		return nil
	}
	switch m {
	case Up, Unavailable, Refusing:
	default:
		return fmt.Errorf("receiver: unknown mode %q", m)
	}
	if m == Refusing {
		_ = r.srv.Close()
	} else if r.mode == Refusing {
		ln, err := net.Listen("tcp", r.addr)
		if err != nil {
			return fmt.Errorf("receiver: listen again on %s: %w", r.addr, err)
		}
		r.serve(ln)
	}
	now := r.now()
	if n := len(r.outages); n > 0 && r.outages[n-1].To.IsZero() {
		r.outages[n-1].To = now
	}
	if m != Up {
		r.outages = append(r.outages, Outage{Mode: m, From: now})
	}
	r.mode = m
	return nil
}

// Close stops the receiver.
func (r *Receiver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.mode != Refusing {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			_ = r.srv.Close()
		}
	}
}

// Snapshot copies what the receiver has seen.
func (r *Receiver) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	events := make(map[string]Receipt, len(r.events))
	for id, e := range r.events {
		events[id] = *e
	}
	return Snapshot{Events: events, Stats: r.stats, Refused: append([]string(nil), r.refused...),
		Changed: append([]string(nil), r.changed...), Outages: append([]Outage(nil), r.outages...)}
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.stats.Posts++
	mode := r.mode
	if mode == Unavailable {
		r.stats.Unavailable++
	}
	r.mu.Unlock()
	if mode == Unavailable {
		http.Error(w, "down for the chaos run", http.StatusServiceUnavailable)
		return
	}
	if req.Method != http.MethodPost {
		r.refuse("", fmt.Sprintf("method %s", req.Method), &r.stats.Malformed)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	id := req.Header.Get(standardwebhooks.HeaderWebhookID)
	if err != nil {
		r.refuse(id, fmt.Sprintf("body: %v", err), &r.stats.Malformed)
		http.Error(w, "body", http.StatusBadRequest)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.refuse(id, err.Error(), &r.stats.BadSig)
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	switch err := dec.Decode(&ev); {
	case err != nil:
		r.refuse(id, fmt.Sprintf("body is not an event: %v", err), &r.stats.Malformed)
		http.Error(w, "body", http.StatusBadRequest)
		return
	case ev.ID != id:
		r.refuse(id, fmt.Sprintf("body's id %q is not the webhook-id header", ev.ID), &r.stats.Malformed)
		http.Error(w, "id", http.StatusBadRequest)
		return
	}
	r.record(ev)
	w.WriteHeader(http.StatusNoContent)
}

// refuse counts a refused delivery in *n and lists why.
func (r *Receiver) refuse(id, why string, n *int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*n++
	if len(r.refused) < maxListed {
		r.refused = append(r.refused, fmt.Sprintf("event %q: %s", id, why))
	}
}

// record keeps an accepted event: a new one with its first receipt's
// instant, a duplicate as one more count (and listed if its body differs).
func (r *Receiver) record(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Accepted++
	if old, ok := r.events[ev.ID]; ok {
		old.Count++
		r.stats.Duplicates++
		if !sameEvent(old.Event, ev) && len(r.changed) < maxListed {
			r.changed = append(r.changed, fmt.Sprintf("event %s: first received as sequence %d %s, again as sequence %d %s",
				ev.ID, old.Sequence, old.Type, ev.Sequence, ev.Type))
		}
		return
	}
	r.events[ev.ID] = &Receipt{Event: ev, FirstAt: r.now(), Count: 1}
}

func sameEvent(a, b Event) bool {
	return a.Sequence == b.Sequence && a.Type == b.Type && a.OccurredAt.Equal(b.OccurredAt) &&
		eqPtr(a.PermitID, b.PermitID) && eqPtr(a.SessionID, b.SessionID) && jsonEqual(a.Data, b.Data)
}

func eqPtr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// Mode is how the receiver answers now.
func (r *Receiver) Mode() Mode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}
