// Package registrar speaks the national parking register's protocol (README
// "Pointing parkd at a register", DOMAIN.md "Registration") over HTTP: it is
// the worker.Registrar that `parkd worker` uses when PARKD_REGISTRAR_URL is
// set. Each right goes out as PUT {URL}/rights/{right_id} with its full state;
// the answer is sorted into acknowledged, refused for good, or worth retrying,
// and the retrying itself is the registrar queue's
// (worker.RegisterRetryDelay).
//
// It is net/http and encoding/json alone: the exchange is one idempotent PUT
// whose retries asynq already owns (a retrying HTTP client such as
// go-retryablehttp would retry inside a task and hold its slot).
package registrar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/hostport"
	"github.com/parkd/parkd/worker"
)

// Defaults of a Client.
const (
	// Timeout bounds one registration, from dialling to the answer's body
	// (README "Pointing parkd at a register": 10 s, then retried).
	Timeout = 10 * time.Second
	// MaxMessage is the longest refusal message kept (characters): it is
	// shown to operators beside the session, not a place for a body.
	MaxMessage = 200
	// maxBody is how much of an answer is read for its message.
	maxBody = 4 << 10
)

// Config configures a Client.
type Config struct {
	// URL is the registrar's base URL (http or https, with a host); rights
	// go to URL + "/rights/{right_id}".
	URL string
	// Token is sent as "Authorization: Bearer {Token}" (PARKD_REGISTRAR_TOKEN);
	// "" sends no Authorization header.
	Token string
	// Timeout of one registration; 0 is Timeout.
	Timeout time.Duration
	// Conns is how many connections to the registrar are kept open for reuse:
	// the registrar queue's concurrency (0: 32).
	Conns int
}

// Client registers rights with one registrar. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

var _ worker.Registrar = (*Client)(nil)

// CheckURL says what is wrong with a registrar base URL, or nil: it must be
// http or https, name a host, with a port from 1 to 65535 if it gives one,
// and carry no query or fragment (rights are appended as a path).
func CheckURL(raw string) error {
	// The URL is not repeated in a message: it may carry a credential.
	const want = "want http(s)://HOST[:PORT][/PATH]"
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a URL: " + want)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return errors.New("names no host: " + want)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("has a query or a fragment: " + want)
	case u.User != nil:
		return errors.New("carries a user or password: put the credential in PARKD_REGISTRAR_TOKEN")
	}
	if err := hostport.CheckHost(u.Host); err != nil {
		return fmt.Errorf("%w: %s", err, want)
	}
	return nil
}

// b64token is RFC 6750's form of a bearer token (section 2.1): what can
// follow "Bearer " in an Authorization header.
var b64token = regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`)

// CheckToken says what is wrong with a registrar's bearer token, or nil: it
// must be RFC 6750's b64token, 1 or more of A-Z a-z 0-9 - . _ ~ + / with
// trailing = only. Anything else (a space, a newline left by `echo` or a
// secrets file) cannot be sent in the header: net/http refuses every request,
// so every right would be retried for ever. The message never repeats the
// token; it names the first character that cannot be sent and where it is.
func CheckToken(token string) error {
	if b64token.MatchString(token) {
		return nil
	}
	if token == "" {
		return errors.New("empty: want RFC 6750 bearer token characters A-Z a-z 0-9 - . _ ~ + / (= only at the end)")
	}
	at, r := 0, rune(0)
	for i, c := range token {
		if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=", c) ||
			c == '=' && strings.TrimLeft(token[i:], "=") != "" {
			at, r = utf8.RuneCountInString(token[:i])+1, c
			break
		}
	}
	return fmt.Errorf("character %d (%q) cannot be sent in an Authorization header: want RFC 6750 bearer token characters A-Z a-z 0-9 - . _ ~ + / (= only at the end), with no space or newline",
		at, r)
}

// New makes a Client for the registrar at cfg.URL (see CheckURL) with
// cfg.Token (see CheckToken; "" sends none).
func New(cfg Config) (*Client, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("registrar URL: %w", err)
	}
	if cfg.Token != "" {
		if err := CheckToken(cfg.Token); err != nil {
			return nil, fmt.Errorf("registrar token: %w", err)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Timeout
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 32
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = cfg.Conns, cfg.Conns
	return &Client{
		base:  strings.TrimRight(cfg.URL, "/"),
		token: cfg.Token,
		http: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A register does not move its API: a redirect is a wrong URL, said
			// as such (and retried until an operator fixes it), and the bearer
			// token never follows one.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Register sends the right's full state as PUT {URL}/rights/{right_id}: 200,
// 201 and 204 are nil; 409 is worker.ErrSuperseded (acknowledged: the
// registrar holds a newer version); any other 4xx but 408 and 429 is a
// *worker.Refusal (README "Pointing parkd at a register": not retried, the
// session shows registration rejected) with the status and what the registrar
// said (plate masked, at most MaxMessage characters) — for 401, 403 and 404,
// which judge parkd's token or URL rather than the right, the message says
// what to check, and once it is fixed an operator sends the refused rights
// again by running their archived tasks. Anything else is an error to retry:
// 5xx, 408, 429, another status, a timeout or a connection that failed.
func (c *Client) Register(ctx context.Context, r worker.Right) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode right %s: %w", r.RightID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/rights/"+url.PathEscape(r.RightID), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("right %s: %w", r.RightID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the method and URL (the right ID, never the
		// plate) and what failed: refused, reset, timed out.
		return fmt.Errorf("registrar call failed: %w", err)
	}
	defer func() {
		// Drain a little so that the connection is reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
	}()
	switch s := resp.StatusCode; {
	case s == http.StatusOK || s == http.StatusCreated || s == http.StatusNoContent:
		return nil
	case s == http.StatusConflict:
		return worker.ErrSuperseded
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests:
		return fmt.Errorf("registrar answered %d for right %s (retried: %s): %s", s, r.RightID, configFault[s], message(resp, r.Plate))
	case s >= 500:
		return fmt.Errorf("registrar answered %d for right %s (retried): %s", s, r.RightID, message(resp, r.Plate))
	case s >= 400 && s < 500:
		msg := message(resp, r.Plate)
		if hint := configFault[s]; hint != "" {
			msg = hint + ": " + msg
		}
		return &worker.Refusal{Status: s, Message: msg}
	default:
		return fmt.Errorf("registrar answered %d for right %s, which the protocol does not know (retried): %s",
			s, r.RightID, message(resp, r.Plate))
	}
}

// configFault says what an operator should look at for the 4xx that are no
// verdict on the right itself. 408 and 429 are retried; 401, 403 and 404 are
// refusals as the contract has every other 4xx, and the hint goes with the
// refusal: after fixing the token or URL, "run all" on the registrar queue's
// archived tasks in asynqmon sends every right refused meanwhile again.
var configFault = map[int]string{
	http.StatusUnauthorized:    "check PARKD_REGISTRAR_TOKEN",
	http.StatusForbidden:       "check PARKD_REGISTRAR_TOKEN and PARKD_REGISTRAR_ISSUER: the register does not let this token register",
	http.StatusNotFound:        "check the path of PARKD_REGISTRAR_URL",
	http.StatusRequestTimeout:  "the register timed the request out",
	http.StatusTooManyRequests: "the register asks for fewer requests",
}

// message is the short text of an answer: the message of a JSON error body
// ({"error":{"message"}}, {"error":"…"}, {"message"}, a problem's "detail" or
// "title"), else the body as text, else the status; on one line, plate
// masked, at most MaxMessage characters.
func message(resp *http.Response, plate string) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	text := fromJSON(b)
	if text == "" {
		text = string(b)
	}
	text = oneLine(text)
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	text = maskPlate(text, plate)
	if utf8.RuneCountInString(text) > MaxMessage {
		text = string([]rune(text)[:MaxMessage-1]) + "…"
	}
	return text
}

// maskPlate masks the right's plate in text however the registrar wrote it
// back: as sent, and as any word that normalises to it (AB-12-CD, ab12cd).
func maskPlate(text, plate string) string {
	text = domain.MaskPlatesIn(text, plate)
	norm, err := domain.NormalizePlate(plate)
	if err != nil || len(norm) <= 2 {
		return text
	}
	return plateWord.ReplaceAllStringFunc(text, func(w string) string {
		if n, err := domain.NormalizePlate(w); err == nil && n == norm {
			return domain.MaskPlate(w)
		}
		return w
	})
}

// plateWord is a run of letters and digits, with dashes or dots inside it.
var plateWord = regexp.MustCompile(`[\p{L}\p{N}][\p{L}\p{N}.\-]*[\p{L}\p{N}]`)

func fromJSON(b []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  string          `json:"detail"`
		Title   string          `json:"title"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	var nested struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	var flat string
	switch {
	case json.Unmarshal(v.Error, &nested) == nil && nested.Message != "":
		if nested.Code != "" {
			return nested.Code + ": " + nested.Message
		}
		return nested.Message
	case json.Unmarshal(v.Error, &flat) == nil && flat != "":
		return flat
	case v.Message != "":
		return v.Message
	case v.Detail != "":
		return v.Detail
	}
	return v.Title
}

// oneLine collapses whitespace and drops control characters and invalid
// UTF-8, so that a message is one readable line in a log or an audit.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
