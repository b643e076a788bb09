package console

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
	"github.com/parkd/parkd/identity"
)

// Path is where the console lives, in `parkd serve` and in `parkd monitor`
// alike (whose root redirects to it).
const Path = "/monitor"

// Cookie holds an operator's token once it was posted to the login form.
const Cookie = "parkd_monitor"

// msgSignIn is what someone without any credentials is told; the login page
// itself says as much.
const msgSignIn = "sign in with an operator token"

const (
	pathLogin  = Path + "/login"
	pathLogout = Path + "/logout"
	pathAPI    = Path + "/api/"
)

// Config configures a Console.
type Config struct {
	Redis    asynq.RedisConnOpt
	Identity *identity.Verifier // the intake's: the same tokens sign in
	ReadOnly bool               // asynqmon's view-only mode: no run, delete, archive or pause
	Log      *slog.Logger       // sign-ins and operators' actions, for the record
	Now      func() time.Time   // the clock of the cookie's expiry; time.Now when nil
}

// Console is asynqmon behind operator authentication. A request passes with
// `Authorization: Bearer <operator token>` (for scripts) or with the session
// cookie that posting an operator token to /monitor/login sets (for browsers:
// HttpOnly, SameSite=Strict, Secure over TLS, expiring with the token). Anything
// else gets the login page (HTML, 401) or, for API calls, the contract's JSON
// 401; a valid token of another role gets 403. Task payloads and results are
// shown as indented JSON with plates masked (MaskedJSON).
type Console struct {
	ids *identity.Verifier
	now func() time.Time
	log *slog.Logger
	ui  *asynqmon.HTTPHandler
}

// New builds a Console; it opens its own Redis connections, which Close
// releases.
func New(c Config) *Console {
	m := &Console{ids: c.Identity, now: c.Now, log: c.Log}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.ui = asynqmon.New(asynqmon.Options{
		RootPath:         Path,
		RedisConnOpt:     c.Redis,
		ReadOnly:         c.ReadOnly,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(MaskedJSON),
		ResultFormatter:  asynqmon.ResultFormatterFunc(MaskedJSON),
	})
	return m
}

// Close releases the console's Redis connections.
func (m *Console) Close() error { return m.ui.Close() }

// Root is where the console is mounted: it serves everything under Root()+"/".
func (m *Console) Root() string { return Path }

// ServeHTTP serves everything under Path.
func (m *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Run, Delete and Archive are buttons: no framing by another site.
	w.Header().Set("X-Frame-Options", "DENY")
	if !safeMethod(r.Method) && !sameOrigin(r) {
		m.deny(w, r, http.StatusForbidden, "a request from another site is refused")
		return
	}
	switch r.URL.Path {
	case pathLogin:
		m.login(w, r)
		return
	case pathLogout:
		m.logout(w, r)
		return
	}
	p, fromCookie, err := m.authenticate(r)
	if err != nil {
		if fromCookie {
			m.clearCookie(w, r) // expired or from another secret: sign in again
		}
		m.deny(w, r, http.StatusUnauthorized, reason(err))
		return
	}
	if p.Role != identity.RoleOperator {
		m.deny(w, r, http.StatusForbidden, "the monitor is for operators; this token's role is "+p.Role)
		return
	}
	if !safeMethod(r.Method) {
		// Operators' actions on tasks and queues, for the record.
		m.logger(r).Info("monitor action", "subject", p.Subject())
	}
	m.ui.ServeHTTP(w, r)
}

// reason is what a caller is told of a refused token.
func reason(err error) string {
	var r *identity.Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return "the token is not valid"
}

// authenticate reads the bearer token, or else the session cookie; fromCookie
// says which was used.
func (m *Console) authenticate(r *http.Request) (p *identity.Principal, fromCookie bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := identity.BearerToken(h)
		if err != nil {
			return nil, false, err
		}
		p, err := m.ids.Verify(r.Context(), tok)
		return p, false, err
	}
	c, err := r.Cookie(Cookie)
	if err != nil || c.Value == "" {
		return nil, false, &identity.Refusal{Reason: msgSignIn}
	}
	p, err = m.ids.Verify(r.Context(), c.Value)
	if err != nil {
		return nil, true, &identity.Refusal{Reason: "your session has ended (" + reason(err) + "); sign in again", Cause: err}
	}
	return p, true, nil
}

func (m *Console) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if p, _, err := m.authenticate(r); err == nil && p.Role == identity.RoleOperator {
			http.Redirect(w, r, Path+"/", http.StatusSeeOther)
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
		if tok == "" {
			m.page(w, http.StatusUnauthorized, "paste an operator token")
			return
		}
		p, err := m.ids.Verify(r.Context(), tok)
		switch {
		case err != nil:
			m.logger(r).Info("monitor sign-in refused", "err", err)
			m.page(w, http.StatusUnauthorized, reason(err))
			return
		case p.Role != identity.RoleOperator:
			m.logger(r).Info("monitor sign-in refused", "subject", p.Subject())
			m.page(w, http.StatusForbidden, "the monitor is for operators; this token's role is "+p.Role)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: Cookie, Value: tok, Path: Path,
			Expires: p.Expires, MaxAge: max(1, int(p.Expires.Sub(m.now()).Seconds())),
			HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
		})
		m.logger(r).Info("monitor sign-in", "subject", p.Subject(), "until", p.Expires.UTC())
		http.Redirect(w, r, Path+"/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		m.deny(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
	}
}

func (m *Console) logout(w http.ResponseWriter, r *http.Request) {
	m.clearCookie(w, r)
	http.Redirect(w, r, pathLogin, http.StatusSeeOther)
}

func (m *Console) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: Path, MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

// deny answers a browser with the login page and anything else (asynqmon's own
// API calls, scripts) with the contract's JSON error.
func (m *Console) deny(w http.ResponseWriter, r *http.Request, status int, msg string) {
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
	// The codes of intake/openapi.yaml's errors.
	code := map[int]string{http.StatusUnauthorized: "unauthenticated", http.StatusForbidden: "forbidden",
		http.StatusMethodNotAllowed: "method_not_allowed"}[status]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (m *Console) page(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ Action, Message string }{pathLogin, msg})
}

// logger is the console's log with the request's method and path: each key
// once, so that every line parses as one record.
func (m *Console) logger(r *http.Request) *slog.Logger {
	return m.log.With("method", r.Method, "path", r.URL.Path)
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
	return !strings.HasPrefix(r.URL.Path, pathAPI) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// MaskedJSON shows a task's payload or result as indented JSON with every
// plate masked (domain.MaskPlatesInJSON): operators need to see what a task
// is, not who parked where. What is not JSON is not shown.
func MaskedJSON(_ string, b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	out, err := domain.MaskPlatesInJSON(b, "  ")
	if err != nil {
		return fmt.Sprintf("(%d bytes, not JSON: not shown)", len(b))
	}
	return string(out)
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
