package parkdbench

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
	"syscall"
	"time"
)

// api is a thin client of parkd's HTTP API: just enough to set up a zone and
// permits and to drive sessions and rights checks, timing nothing itself.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(base string, maxConns int) *api {
	tr := &http.Transport{
		// Every virtual user keeps its connection: the bench measures parkd,
		// not TCP handshakes (except where a phase says otherwise).
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	// A write waits up to 2 s for its outcome; 30 s is a hung server.
	return &api{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (a *api) close() { a.hc.CloseIdleConnections() }

// answer is an HTTP answer as the bench needs it.
type answer struct {
	Status int
	Body   []byte
	Code   string // the error code of an error answer
}

// errorKind names an answer that is not a success for the error counts: the
// status and the contract's error code ("422 plate_already_parked").
func (an answer) errorKind() string {
	if an.Code != "" {
		return fmt.Sprintf("%d %s", an.Status, an.Code)
	}
	return strconv.Itoa(an.Status)
}

// transportKind names a failure to get any answer, coarsely enough to count.
func transportKind(err error) string {
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

// do sends one request. body is JSON-encoded unless nil; key is the
// Idempotency-Key, if any.
func (a *api) do(ctx context.Context, method, path, token, key string, body any) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
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
	res, err := a.hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return answer{}, err
	}
	an := answer{Status: res.StatusCode, Body: b}
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

// outcome is a write's final answer: applied with its result, or rejected
// with the rule's code.
type outcome struct {
	Applied bool
	Result  json.RawMessage
	Code    string // the rule's code when rejected
	Pending bool   // the first answer was 202 and the outcome was read back
}

// errAnswer is an answer that is neither an outcome nor pending.
type errAnswer struct{ an answer }

func (e *errAnswer) Error() string {
	return fmt.Sprintf("%s: %s", e.an.errorKind(), bytes.TrimSpace(e.an.Body))
}

// failureKind names err for the error counts.
func failureKind(err error) string {
	var ea *errAnswer
	if errors.As(err, &ea) {
		return ea.an.errorKind()
	}
	return transportKind(err)
}

// write sends a write and returns its outcome. A 202 pending is followed up
// at GET /v1/requests/{key} until the outcome is there (or maxWait passes), as
// an upstream app would; a 422 is a rejection, an outcome like any other.
func (a *api) write(ctx context.Context, method, path, token, key string, body any, maxWait time.Duration) (outcome, error) {
	an, err := a.do(ctx, method, path, token, key, body)
	if err != nil {
		return outcome{}, err
	}
	switch {
	case an.Status == http.StatusOK || an.Status == http.StatusCreated:
		return outcome{Applied: true, Result: an.Body}, nil
	case an.Status == http.StatusUnprocessableEntity:
		return outcome{Code: an.Code}, nil
	case an.Status != http.StatusAccepted:
		return outcome{}, &errAnswer{an}
	}
	o, err := a.awaitOutcome(ctx, token, key, maxWait)
	o.Pending = true
	return o, err
}

// awaitOutcome polls a request's outcome every 50 ms.
func (a *api) awaitOutcome(ctx context.Context, token, key string, maxWait time.Duration) (outcome, error) {
	deadline := time.Now().Add(maxWait)
	for {
		an, err := a.do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(key), token, "", nil)
		if err != nil {
			return outcome{}, err
		}
		if an.Status != http.StatusOK {
			return outcome{}, &errAnswer{an}
		}
		var rec struct {
			Status string          `json:"status"`
			Result json.RawMessage `json:"result"`
			Error  struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(an.Body, &rec); err != nil {
			return outcome{}, fmt.Errorf("request %s: decode outcome: %w", key, err)
		}
		switch rec.Status {
		case "applied":
			return outcome{Applied: true, Result: rec.Result}, nil
		case "rejected":
			return outcome{Code: rec.Error.Code}, nil
		}
		if time.Now().After(deadline) {
			return outcome{}, fmt.Errorf("request %s: still pending after %s", key, maxWait)
		}
		select {
		case <-ctx.Done():
			return outcome{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// idOf reads the "id" of a session or permit result.
func idOf(result json.RawMessage) (string, error) {
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(result, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("result has no id: %.200s", result)
	}
	return v.ID, nil
}
