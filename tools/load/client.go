package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Client is a thin client of parkd's HTTP API: just enough to set up a zone and
// permits and to drive sessions and rights checks, timing nothing itself.
type Client struct {
	bases []string      // the APIs' base URLs; requests take them in turn
	next  atomic.Uint64 // the next request's turn
	// HTTP sends the requests; a driver may change its Timeout.
	HTTP *http.Client
}

// NewClient is a client of the API at base keeping up to maxConns
// connections open.
func NewClient(base string, maxConns int) *Client {
	return NewSpreadClient([]string{base}, maxConns)
}

// NewSpreadClient is a client of several intakes of one parkd, as behind a
// load balancer: each request, a retry under the same Idempotency-Key
// included, goes to the next base in turn. It keeps up to maxConns
// connections open to each.
func NewSpreadClient(bases []string, maxConns int) *Client {
	tr := &http.Transport{
		// Every virtual user keeps its connection: the bench measures parkd,
		// not TCP handshakes (except where a phase says otherwise).
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	// A write waits up to 2 s for its outcome; 30 s is a hung server.
	c := &Client{HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	for _, b := range bases {
		c.bases = append(c.bases, strings.TrimRight(b, "/"))
	}
	return c
}

// Close closes the idle connections.
func (a *Client) Close() { a.HTTP.CloseIdleConnections() }

// Answer is an HTTP answer as the bench needs it.
type Answer struct {
	Status int
	Body   []byte
	Code   string // the error code of an error answer
}

// ErrorKind names an answer that is not a success for the error counts: the
// status and the contract's error code ("422 plate_already_parked").
func (an Answer) ErrorKind() string {
	if an.Code != "" {
		return fmt.Sprintf("%d %s", an.Status, an.Code)
	}
	return strconv.Itoa(an.Status)
}

// TransportKind names a failure to get any answer, coarsely enough to count.
func TransportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "transport: timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "transport: connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "transport: connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "transport: connection closed"
	}
	return "transport: " + err.Error()
}

// Do sends one request. body is JSON-encoded unless nil; key is the
// Idempotency-Key, if any.
func (a *Client) Do(ctx context.Context, method, path, token, key string, body any) (Answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Answer{}, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	base := a.bases[(a.next.Add(1)-1)%uint64(len(a.bases))]
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return Answer{}, err
	}
	an := Answer{Status: res.StatusCode, Body: b}
	if res.StatusCode >= 400 {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil {
			an.Code = e.Error.Code
		}
	}
	return an, nil
}

// Outcome is a write's final answer: applied with its result, or rejected
// with the rule's code.
type Outcome struct {
	Applied bool
	Result  json.RawMessage
	Code    string // the rule's code when rejected
	Pending bool   // the first answer was 202 and the outcome was read back
}

// ErrAnswer is an answer that is neither an outcome nor pending.
type ErrAnswer struct{ Answer Answer }

func (e *ErrAnswer) Error() string {
	return fmt.Sprintf("%s: %s", e.Answer.ErrorKind(), bytes.TrimSpace(e.Answer.Body))
}

// FailureKind names err for the error counts.
func FailureKind(err error) string {
	var ea *ErrAnswer
	if errors.As(err, &ea) {
		return ea.Answer.ErrorKind()
	}
	return TransportKind(err)
}

// Write sends a write and returns its outcome. A 202 pending is followed up
// at GET /v1/requests/{key} until the outcome is there (or maxWait passes), as
// an upstream app would; a 422 is a rejection, an outcome like any other.
func (a *Client) Write(ctx context.Context, method, path, token, key string, body any, maxWait time.Duration) (Outcome, error) {
	an, err := a.Do(ctx, method, path, token, key, body)
	if err != nil {
		return Outcome{}, err
	}
	switch {
	case an.Status == http.StatusOK || an.Status == http.StatusCreated:
		return Outcome{Applied: true, Result: an.Body}, nil
	case an.Status == http.StatusUnprocessableEntity:
		return Outcome{Code: an.Code}, nil
	case an.Status != http.StatusAccepted:
		return Outcome{}, &ErrAnswer{an}
	}
	o, err := a.awaitOutcome(ctx, token, key, maxWait)
	o.Pending = true
	return o, err
}

// awaitOutcome polls a request's outcome every 50 ms.
func (a *Client) awaitOutcome(ctx context.Context, token, key string, maxWait time.Duration) (Outcome, error) {
	deadline := time.Now().Add(maxWait)
	for {
		an, err := a.Do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(key), token, "", nil)
		if err != nil {
			return Outcome{}, err
		}
		if an.Status != http.StatusOK {
			return Outcome{}, &ErrAnswer{an}
		}
		var rec struct {
			Status string          `json:"status"`
			Result json.RawMessage `json:"result"`
			Error  struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(an.Body, &rec); err != nil {
			return Outcome{}, fmt.Errorf("request %s: decode outcome: %w", key, err)
		}
		switch rec.Status {
		case "applied":
			return Outcome{Applied: true, Result: rec.Result}, nil
		case "rejected":
			return Outcome{Code: rec.Error.Code}, nil
		}
		if time.Now().After(deadline) {
			return Outcome{}, fmt.Errorf("request %s: still pending after %s", key, maxWait)
		}
		select {
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IDOf reads the "id" of a session or permit result.
func IDOf(result json.RawMessage) (string, error) {
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(result, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("result has no id: %.200s", result)
	}
	return v.ID, nil
}
