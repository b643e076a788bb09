package intake_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/parkd/parkd/jobs"
)

// lineLog keeps every JSON log line, at every level.
type lineLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineLog) lines(t *testing.T) (raw string, lines []map[string]any) {
	l.mu.Lock()
	raw = l.buf.String()
	l.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		lines = append(lines, m)
	}
	return raw, lines
}

// Starts through the intake and the worker: applied, rejected because the plate
// is parked already, and rejected for an odd plate. No log line at any level,
// of the intake, the worker or asynq, shows a plate; the intake's lines carry
// the request ID, method, route and subject, the worker's the task ID and
// request ID.
func TestLogsCarryIDsAndNoPlates(t *testing.T) {
	ll := &lineLog{}
	e := setup(t, options{log: slog.New(slog.NewJSONHandler(ll, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	a, b := e.resident(10), e.resident(10)

	e.mustDo("POST", "/v1/permits/"+a.permit+"/sessions", a.token, map[string]any{"plate": "xq-71-zv"},
		http.StatusCreated, nil, "Idempotency-Key", "log-start-1")
	r := e.do("POST", "/v1/permits/"+b.permit+"/sessions", b.token, map[string]any{"plate": "XQ 71 ZV"},
		"Idempotency-Key", "log-start-2")
	wantError(t, r, http.StatusUnprocessableEntity, "plate_already_parked")
	r = e.do("POST", "/v1/permits/"+b.permit+"/sessions", b.token, map[string]any{"plate": "XQ-71-ZV!"},
		"Idempotency-Key", "log-start-3")
	wantError(t, r, http.StatusUnprocessableEntity, "invalid_plate")
	// Without an Idempotency-Key: the ID the intake makes up is the one logged.
	r = e.mustDo("POST", "/v1/permits/"+a.permit+"/sessions", a.token, map[string]any{"plate": "rt-55-kl"}, http.StatusCreated, nil)
	made := r.Header.Get("X-Request-Id")

	raw, lines := ll.lines(t)
	rest, _ := json.Marshal(lines)
	for _, form := range []string{"XQ71ZV", "XQ-71-ZV", "XQ 71 ZV", "XQ-71", "Q71Z", "RT55KL", "RT-55"} {
		if strings.Contains(strings.ToUpper(raw), form) || strings.Contains(strings.ToUpper(string(rest)), form) {
			t.Errorf("the log shows the plate (%s):\n%s", form, grep(raw, "XQ"))
		}
	}
	enqueued, rejected := map[string]bool{}, map[string]bool{}
	for _, l := range lines {
		switch l["msg"] {
		case "request enqueued":
			if l["task_type"] == "session:start" && l["route"] != "/v1/permits/{permit_id}/sessions" {
				t.Errorf("intake line without its route: %v", l)
			}
			if !strings.Contains(str(l["subject"]), ":") || l["method"] != "POST" {
				t.Errorf("intake line without who asked and how: %v", l)
			}
			enqueued[str(l["request_id"])] = true
		case "request rejected":
			if str(l["task_id"]) == "" || l["task_id"] != jobs.RequestTaskID(str(l["request_id"])) {
				t.Errorf("worker line without its task and request ID: %v", l)
			}
			rejected[str(l["request_id"])] = true
		}
	}
	for _, id := range []string{"log-start-1", "log-start-2", "log-start-3", made} {
		if !enqueued[id] {
			t.Errorf("no intake line with request_id=%s", id)
		}
	}
	if !rejected["log-start-2"] || !rejected["log-start-3"] {
		t.Errorf("the worker's rejections are not logged with their request IDs: %v", rejected)
	}
}

func str(v any) string { s, _ := v.(string); return s }

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToUpper(l), sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
