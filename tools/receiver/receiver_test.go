package receiver_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parkd/parkd/tools/receiver"
)

func start(t *testing.T) *receiver.Receiver {
	t.Helper()
	r, err := receiver.Start("", receiver.NewSecret())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func body(id string, seq int64, typ string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"sequence":%d,"type":%q,"occurred_at":"2026-11-30T13:00:00Z","permit_id":"7","session_id":"12","data":{"id":"12","plate":"AB-**-CD"}}`,
		id, seq, typ)
}

// post sends body as parkd does: signed with secret at at, under the
// webhook-id id. It returns the status, or the transport's error.
func post(t *testing.T, url, secret, id string, b []byte, at time.Time) (int, error) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, at, b)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// A signed event is accepted (204) and recorded once, with its first
// receipt's instant; a repeat is a duplicate that raises its count, and is
// listed when its body differs.
func TestReceiverRecordsSignedEventsAndCountsDuplicates(t *testing.T) {
	r := start(t)
	before := time.Now()
	for i, b := range [][]byte{body("e1", 1, "session.started"), body("e1", 1, "session.started"), body("e2", 2, "session.stopped"), body("e1", 9, "session.started")} {
		id := map[int]string{0: "e1", 1: "e1", 2: "e2", 3: "e1"}[i]
		if st, err := post(t, r.URL(), r.Secret(), id, b, time.Now()); err != nil || st != http.StatusNoContent {
			t.Fatalf("delivery %d: %d %v, want 204", i, st, err)
		}
	}
	s := r.Snapshot()
	if len(s.Events) != 2 || s.Stats.Accepted != 4 || s.Stats.Duplicates != 2 || s.Stats.Posts != 4 {
		t.Fatalf("snapshot %+v, %d events; want 2 events, 4 accepted, 2 duplicates", s.Stats, len(s.Events))
	}
	e1 := s.Events["e1"]
	if e1.Count != 3 || e1.Sequence != 1 || e1.Type != "session.started" || *e1.SessionID != "12" || e1.FirstAt.Before(before) {
		t.Errorf("e1 = %+v; want the first receipt, counted 3 times", e1)
	}
	if len(s.Changed) != 1 {
		t.Errorf("changed = %v; want the repeat of e1 with sequence 9 listed", s.Changed)
	}
}

// A delivery whose signature does not verify with the Standard Webhooks
// library (another secret, a changed body, no headers, a timestamp outside
// its five minutes) is 401, one whose body is not the event its header names
// 400; none is recorded.
func TestReceiverRefusesWhatIsNotSignedOrNotTheEvent(t *testing.T) {
	r := start(t)
	now := time.Now()
	good := body("e1", 1, "session.started")
	for _, c := range []struct {
		name   string
		secret string
		id     string
		body   []byte
		sent   []byte // the body sent, when it differs from the body signed
		at     time.Time
		want   int
	}{
		{"another secret", receiver.NewSecret(), "e1", good, nil, now, 401},
		{"body changed after signing", r.Secret(), "e1", good, body("e1", 2, "session.started"), now, 401},
		{"another id signed", r.Secret(), "e9", good, nil, now, 400},
		{"timestamp ten minutes old", r.Secret(), "e1", good, nil, now.Add(-10 * time.Minute), 401},
		{"timestamp ten minutes ahead", r.Secret(), "e1", good, nil, now.Add(10 * time.Minute), 401},
		{"not JSON", r.Secret(), "e1", []byte("not json"), nil, now, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := 0
			var err error
			if c.sent == nil {
				st, err = post(t, r.URL(), c.secret, c.id, c.body, c.at)
			} else {
				st, err = postTampered(t, r.URL(), c.secret, c.id, c.body, c.sent, c.at)
			}
			if err != nil || st != c.want {
				t.Fatalf("%d %v, want %d", st, err, c.want)
			}
		})
	}
	res, err := http.Post(r.URL(), "application/json", bytes.NewReader(good))
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("unsigned: %v %v, want 401", res, err)
	}
	res.Body.Close()
	s := r.Snapshot()
	if len(s.Events) != 0 || s.Stats.Accepted != 0 || s.Stats.BadSig != 5 || s.Stats.Malformed != 2 || len(s.Refused) != 7 {
		t.Fatalf("stats %+v, %d events, refused %v; want nothing recorded, 5 bad signatures, 2 malformed", s.Stats, len(s.Events), s.Refused)
	}
}

func postTampered(t *testing.T, url, secret, id string, signed, sent []byte, at time.Time) (int, error) {
	t.Helper()
	wh, _ := standardwebhooks.NewWebhook(secret)
	sig, _ := wh.Sign(id, at, signed)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(sent))
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// Down, the receiver answers 503 and records nothing, or refuses
// connections; back up, it accepts on the same address. Each spell down is an
// outage with its mode and end.
func TestReceiverGoesDownAndComesBackOnTheSameAddress(t *testing.T) {
	r := start(t)
	url, b := r.URL(), body("e1", 1, "session.started")
	if err := r.SetMode(receiver.Unavailable); err != nil {
		t.Fatal(err)
	}
	if st, err := post(t, url, r.Secret(), "e1", b, time.Now()); err != nil || st != http.StatusServiceUnavailable {
		t.Fatalf("unavailable: %d %v, want 503", st, err)
	}
	if err := r.SetMode(receiver.Refusing); err != nil {
		t.Fatal(err)
	}
	if st, err := post(t, url, r.Secret(), "e1", b, time.Now()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refusing: %d %v, want the connection refused", st, err)
	}
	if err := r.SetMode(receiver.Up); err != nil {
		t.Fatal(err)
	}
	if r.URL() != url {
		t.Fatalf("back on %s, was %s", r.URL(), url)
	}
	if st, err := post(t, url, r.Secret(), "e1", b, time.Now()); err != nil || st != http.StatusNoContent {
		t.Fatalf("up again: %d %v, want 204", st, err)
	}
	s := r.Snapshot()
	if len(s.Events) != 1 || s.Events["e1"].Count != 1 || s.Stats.Unavailable != 1 {
		t.Fatalf("stats %+v, events %v: want only the delivery made while up, and one 503", s.Stats, s.Events)
	}
	if len(s.Outages) != 2 || s.Outages[0].Mode != receiver.Unavailable || s.Outages[1].Mode != receiver.Refusing ||
		s.Outages[0].To.IsZero() || s.Outages[1].To.IsZero() || s.Outages[1].From.Before(s.Outages[0].To) {
		t.Fatalf("outages %+v: want a 503 spell then a refusing one, both ended", s.Outages)
	}
}
