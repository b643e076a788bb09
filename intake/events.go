package intake

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/parkd/parkd/hostport"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// The event feed and webhook subscriptions (README "Events and webhooks: how
// an upstream app subscribes"), for operators. Both are read and written
// directly, not queued: the feed is a read, and a subscription is reference
// data like a zone.

// Feed page sizes.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 500
)

var digits = regexp.MustCompile(`^[0-9]+$`)

// listEvents: GET /v1/events?after=&limit=&type= (operator): numbered events
// with a sequence greater than after, oldest first. next is the last
// sequence of a full page (the after= of the next one); absent when the page
// is not full, which means the consumer is up to date for now.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	q := r.URL.Query()
	var after int64
	if q.Has("after") {
		n, err := strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil || !digits.MatchString(q.Get("after")) {
			return badRequest("after", "must be a whole number, 0 or more: the sequence of the last event read")
		}
		after = n
	}
	limit := DefaultEventLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxEventLimit {
			return badRequest("limit", "must be a whole number from 1 to %d", MaxEventLimit)
		}
		limit = n
	}
	var types []string
	for _, v := range q["type"] {
		for _, t := range strings.Split(v, ",") {
			if err := knownEventType("type", t); err != nil {
				return err
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.EventsAfter(ctx, s.Store.DB, after, types, limit)
	if err != nil {
		return err
	}
	type page struct {
		Events []jobs.Event `json:"events"`
		Next   *int64       `json:"next,omitempty"`
	}
	out := page{Events: make([]jobs.Event, len(rows))}
	for i := range rows {
		out.Events[i] = rows[i].View()
	}
	if len(rows) == limit {
		next := out.Events[limit-1].Sequence
		out.Next = &next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// knownEventType is nil for one of jobs.EventTypes, else a 400 naming it.
func knownEventType(field, t string) error {
	if slices.Contains(jobs.EventTypes(), t) {
		return nil
	}
	return badRequest(field, "unknown event type %q; the types are %s", truncate(t, 40), strings.Join(jobs.EventTypes(), ", "))
}

// webhookNameRE is the schema's CHECK on webhooks.name.
var webhookNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Bounds of a webhook's secret: Standard Webhooks' whsec_ + base64 of 24 to
// 64 random bytes.
const (
	secretPrefix   = "whsec_"
	minSecretBytes = 24
	maxSecretBytes = 64
	maxWebhookURL  = 2048
)

func webhookName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	// "." and ".." match the pattern, but are path segments: only their
	// percent-encoded forms reach here, and such a webhook could be reached
	// no other way.
	if !webhookNameRE.MatchString(name) || name == "." || name == ".." {
		return "", badRequest("name", "must be 1-64 of A-Z, a-z, 0-9, _, . and -, and not . or ..")
	}
	return name, nil
}

// putWebhook: PUT /v1/admin/webhooks/{name} (operator): creates or replaces
// a subscription. Every field is checked before anything is written; the
// answer never shows the secret.
func (s *Server) putWebhook(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	name, err := webhookName(r)
	if err != nil {
		return err
	}
	var f struct {
		URL    *string   `json:"url"`
		Secret *string   `json:"secret"`
		Types  *[]string `json:"types"`
		Active *bool     `json:"active"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	wh := &repo.Webhook{Name: name, Active: true}
	if wh.URL, err = webhookURL(f.URL); err != nil {
		return err
	}
	if wh.Secret, err = webhookSecret(f.Secret); err != nil {
		return err
	}
	if f.Types != nil { // absent or null: every type
		if len(*f.Types) == 0 {
			return badRequest("types", "must name at least one event type, or be absent for every type")
		}
		wh.Types = []string{}
		for _, t := range *f.Types {
			if err := knownEventType("types", t); err != nil {
				return err
			}
			if !slices.Contains(wh.Types, t) {
				wh.Types = append(wh.Types, t)
			}
		}
	}
	if f.Active != nil {
		wh.Active = *f.Active
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	stored, err := repo.PutWebhook(ctx, s.Store.DB, wh)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, stored.View())
	return nil
}

// webhookURL checks a webhook's url: http or https, with a host (and a port
// from 1 to 65535 if it gives one: url.Parse takes :99999 and :, which only
// fail when every delivery is dialled), without a user or password (a secret
// in a URL ends up in logs), a fragment (never sent), or white space,
// control or invisible characters (Go's URL parser takes a raw space, a C1
// control, a zero-width space or a right-to-left override in a path or
// host, and they would be stored as given: a receiver's URL is written as
// sent, percent-encoded).
func webhookURL(s *string) (string, error) {
	v, err := required("url", s)
	if err != nil {
		return "", err
	}
	if len(v) > maxWebhookURL {
		return "", badRequest("url", "longer than %d characters", maxWebhookURL)
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return "", badRequest("url", "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", badRequest("url", "must be http or https")
	case u.Hostname() == "":
		return "", badRequest("url", "must name a host")
	case hostport.CheckHost(u.Host) != nil:
		return "", badRequest("url", "must have a port from 1 to 65535, or none")
	case u.User != nil:
		return "", badRequest("url", "must not carry a user or password")
	case u.Fragment != "" || strings.Contains(v, "#"):
		return "", badRequest("url", "must not have a #fragment")
	case strings.ContainsFunc(v, func(r rune) bool { return r == ' ' || !unicode.IsPrint(r) }):
		return "", badRequest("url", "must not contain white space, control or invisible characters (percent-encode them, a space as %%20)")
	}
	return v, nil
}

// webhookSecret checks a webhook's secret: whsec_ + standard base64 (padded)
// of 24 to 64 bytes.
func webhookSecret(s *string) (string, error) {
	v, err := required("secret", s)
	if err != nil {
		return "", err
	}
	b64, ok := strings.CutPrefix(v, secretPrefix)
	if !ok {
		return "", badRequest("secret", "must start with %s", secretPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	// Go's decoder skips line breaks (base64 tools wrap at 76 characters):
	// the secret is stored as given, so it must be exactly the documented
	// form, which a receiver's library may read more strictly.
	if err != nil || strings.ContainsAny(b64, "\r\n") {
		return "", badRequest("secret", "must be %s followed by standard base64", secretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return "", badRequest("secret", "must encode %d to %d random bytes, not %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return v, nil
}

// listWebhooks: GET /v1/admin/webhooks (operator), by name.
func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.ListWebhooks(ctx, s.Store.DB)
	if err != nil {
		return err
	}
	out := make([]jobs.Webhook, len(rows))
	for i := range rows {
		out[i] = rows[i].View()
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
	return nil
}

// deleteWebhook: DELETE /v1/admin/webhooks/{name} (operator). 204 also when
// there is no such webhook (deleted already), so that a retry is harmless, as
// deleting a favourite. What it was still owed is dropped.
func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	name, err := webhookName(r)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	if _, err := repo.DeleteWebhook(ctx, s.Store.DB, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
