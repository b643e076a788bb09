package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/parkd/parkd/domain"
)

// MonitorPath is where the monitor lives, in `parkd serve` and in `parkd monitor`
// alike (whose root redirects to it).
const MonitorPath = "/monitor"

// MonitorCookie holds an operator's token once it was posted to the login form.
const MonitorCookie = "parkd_monitor"

// msgSignIn is what someone without any credentials is told; the login page
// itself says as much.
const msgSignIn = "sign in with an operator token"

const (
	monitorLogin  = MonitorPath + "/login"
	monitorLogout = MonitorPath + "/logout"
	monitorAPI    = MonitorPath + "/api/"
)

// MonitorConfig configures a Monitor.
type MonitorConfig struct {
	Redis    asynq.RedisConnOpt
	Secret   []byte // HS256 key of bearer tokens, the intake's
	ReadOnly bool   // asynqmon's view-only mode: no run, delete, archive or pause
	Log      *slog.Logger
	Now      func() time.Time // the clock; time.Now when nil
}

// Monitor is asynqmon, asynq's web UI, behind operator authentication, which
// asynqmon has none of (its issue #78). A request passes with
// `Authorization: Bearer <operator token>` (for scripts) or with the session
// cookie that posting an operator token to /monitor/login sets (for browsers:
// HttpOnly, SameSite=Strict, Secure over TLS, expiring with the token). Anything
// else gets the login page (HTML, 401) or, for API calls, a JSON 401; a valid
// token of another role gets 403. Task payloads and results are shown as
// indented JSON with plates masked.
type Monitor struct {
	secret []byte
	now    func() time.Time
	log    *slog.Logger
	ui     *asynqmon.HTTPHandler
}

// NewMonitor builds a Monitor; it opens its own Redis connections, which Close
// releases.
func NewMonitor(c MonitorConfig) *Monitor {
	m := &Monitor{secret: c.Secret, now: c.Now, log: c.Log}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.ui = asynqmon.New(asynqmon.Options{
		RootPath:         MonitorPath,
		RedisConnOpt:     c.Redis,
		ReadOnly:         c.ReadOnly,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(MaskedJSON),
		ResultFormatter:  asynqmon.ResultFormatterFunc(MaskedJSON),
	})
	return m
}

// Close releases the monitor's Redis connections.
func (m *Monitor) Close() error { return m.ui.Close() }

// Handler serves everything under MonitorPath.
func (m *Monitor) Handler() http.Handler { return http.HandlerFunc(m.serve) }

func (m *Monitor) serve(w http.ResponseWriter, r *http.Request) {
	// Run, Delete and Archive are buttons: no framing by another site.
	w.Header().Set("X-Frame-Options", "DENY")
	if !safeMethod(r.Method) && !sameOrigin(r) {
		m.deny(w, r, http.StatusForbidden, "a request from another site is refused")
		return
	}
	switch r.URL.Path {
	case monitorLogin:
		m.login(w, r)
		return
	case monitorLogout:
		m.logout(w, r)
		return
	}
	p, fromCookie, err := m.authenticate(r)
	if err != nil {
		if fromCookie {
			m.clearCookie(w, r) // expired or from another secret: sign in again
		}
		m.deny(w, r, http.StatusUnauthorized, toAPIError(err).Message)
		return
	}
	if p.Role != RoleOperator {
		m.deny(w, r, http.StatusForbidden, "the monitor is for operators; this token's role is "+p.Role)
		return
	}
	if !safeMethod(r.Method) {
		// Operators' actions on tasks and queues, for the record.
		m.logger(r).Info("monitor action", "subject", p.subject(), "method", r.Method, "path", r.URL.Path)
	}
	m.ui.ServeHTTP(w, r)
}

// authenticate reads the bearer token, or else the session cookie; fromCookie
// says which was used.
func (m *Monitor) authenticate(r *http.Request) (p *principal, fromCookie bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, false, errUnauthenticated("the Authorization header must be 'Bearer <token>'")
		}
		p, err := verifyToken(m.secret, strings.TrimSpace(tok), m.now)
		return p, false, err
	}
	c, err := r.Cookie(MonitorCookie)
	if err != nil || c.Value == "" {
		return nil, false, errUnauthenticated(msgSignIn)
	}
	p, err = verifyToken(m.secret, c.Value, m.now)
	if err != nil {
		return nil, true, errUnauthenticated("your session has ended (" + toAPIError(err).Message + "); sign in again")
	}
	return p, true, nil
}

func (m *Monitor) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if p, _, err := m.authenticate(r); err == nil && p.Role == RoleOperator {
			http.Redirect(w, r, MonitorPath+"/", http.StatusSeeOther)
			return
		}
		m.page(w, http.StatusOK, "")
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			m.page(w, http.StatusBadRequest, "the form could not be read")
			return
		}
		tok := strings.TrimSpace(r.PostForm.Get("token"))
		if scheme, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(scheme, "Bearer") {
			tok = strings.TrimSpace(rest) // pasted with its scheme
		}
		p, err := verifyToken(m.secret, tok, m.now)
		switch {
		case tok == "":
			m.page(w, http.StatusUnauthorized, "paste an operator token")
			return
		case err != nil:
			m.logger(r).Info("monitor sign-in refused", "err", err)
			m.page(w, http.StatusUnauthorized, toAPIError(err).Message)
			return
		case p.Role != RoleOperator:
			m.logger(r).Info("monitor sign-in refused", "subject", p.subject())
			m.page(w, http.StatusForbidden, "the monitor is for operators; this token's role is "+p.Role)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: MonitorCookie, Value: tok, Path: MonitorPath,
			Expires: p.expires, MaxAge: max(1, int(p.expires.Sub(m.now()).Seconds())),
			HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
		})
		m.logger(r).Info("monitor sign-in", "subject", p.subject(), "until", p.expires.UTC())
		http.Redirect(w, r, MonitorPath+"/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		m.deny(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
	}
}

func (m *Monitor) logout(w http.ResponseWriter, r *http.Request) {
	m.clearCookie(w, r)
	http.Redirect(w, r, monitorLogin, http.StatusSeeOther)
}

func (m *Monitor) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: MonitorCookie, Value: "", Path: MonitorPath, MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

// deny answers a browser with the login page and anything else (asynqmon's own
// API calls, scripts) with the contract's JSON error.
func (m *Monitor) deny(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parkd monitor"`)
	}
	if wantsHTML(r) {
		if msg == msgSignIn {
			msg = ""
		}
		m.page(w, status, msg)
		return
	}
	code := map[int]string{http.StatusUnauthorized: CodeUnauthenticated, http.StatusForbidden: CodeForbidden,
		http.StatusMethodNotAllowed: CodeMethodNotAllowed}[status]
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

func (m *Monitor) page(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ Action, Message string }{monitorLogin, msg})
}

func (m *Monitor) logger(r *http.Request) *slog.Logger {
	if l, ok := r.Context().Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return m.log
}

func safeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// sameOrigin refuses a state-changing request that a browser says comes from
// another origin, behind SameSite=Strict as a second line. Scripts send no
// Origin and pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// secure: over TLS, directly or through a proxy that terminated it.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// wantsHTML tells a browser's page load from an API call.
func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, monitorAPI) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// MaskedJSON shows a task's payload or result as indented JSON with every
// plate masked (maskPlates): operators need to see what a task is, not who
// parked where. What is not JSON is not shown.
func MaskedJSON(_ string, b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	out, err := maskedJSON(b, "  ")
	if err != nil {
		return fmt.Sprintf("(%d bytes, not JSON: not shown)", len(b))
	}
	return string(out)
}

// maskedJSON is JSON document b with every plate masked (maskPlates), indented
// by indent ("" for compact), or an error when b is not one JSON document.
func maskedJSON(b []byte, indent string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(maskPlates(v)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// maskPlates masks the value of every "plate" key, at any depth, with
// domain.MaskPlate: the one masking of everything operators read (the console,
// request outcomes) and of the logs.
func maskPlates(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && strings.EqualFold(k, "plate") {
				if n, err := domain.NormalizePlate(s); err == nil {
					s = n // as the logs show it: "AB-12-CD" and "ab12cd" alike
				}
				t[k] = domain.MaskPlate(s)
			} else {
				t[k] = maskPlates(x)
			}
		}
	case []any:
		for i := range t {
			t[i] = maskPlates(t[i])
		}
	}
	return v
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>parkd monitor: sign in</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#172b4d;margin:0}
main{max-width:34rem;margin:12vh auto;background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.4rem;margin:0 0 .5rem}
textarea{width:100%;box-sizing:border-box;height:7rem;font:13px monospace;padding:.5rem}
button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem;background:#0052cc;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{background:#ffebe6;color:#bf2600;padding:.5rem .75rem;border-radius:4px}
code{background:#f4f5f7;padding:0 .25rem}
</style></head>
<body><main>
<h1>parkd monitor</h1>
<p>The queues of parkd (asynqmon). Sign in with an operator token.</p>
{{if .Message}}<p class="err" role="alert">{{.Message}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="token">Operator token</label>
<textarea id="token" name="token" autocomplete="off" spellcheck="false" required autofocus></textarea>
<button type="submit">Sign in</button>
</form>
<p><small>A token: <code>parkd token --role operator --sub NAME</code>. The session ends when the token expires.</small></p>
</main></body></html>
`))
