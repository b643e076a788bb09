package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// Three `parkd worker` processes on one Postgres and one Redis: every request is
// decided by exactly one of them, once, and each of them takes part. Starts race
// on shared permits (balances run out) and shared plates (one open session per
// plate and zone), stops follow, and every request is then delivered again.
func TestThreeWorkersDoEachRequestOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three parkd processes")
	}
	ctx := context.Background()
	w := newWorld(t, 30, 6)

	ports := []int{freePort(t), freePort(t), freePort(t)}
	for _, port := range ports {
		startParkd(t, append(w.env, "PARKD_WORKER_CONCURRENCY=8", fmt.Sprintf("PARKD_METRICS_ADDR=127.0.0.1:%d", port)), "worker")
	}
	// All three are up before the load, so that each can take its share.
	insp := asynq.NewInspector(w.redisOpt)
	defer insp.Close()
	// Each worker runs one server of parkd's queues (and one per outbound queue).
	waitUntil(t, 30*time.Second, "three workers registered", func() bool {
		servers, err := insp.Servers()
		n := 0
		for _, s := range servers {
			if _, ok := s.Queues[jobs.QueueCritical]; ok {
				n++
			}
		}
		return err == nil && n == 3
	})

	const n = 600
	starts := make([]*asynq.Task, n)
	for i := range n {
		end := time.Now().Add(time.Duration(20+rand.IntN(20)) * time.Minute)
		task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: fmt.Sprintf("three-start-%d", i),
			PermitID: w.permits[i%len(w.permits)], Plate: fmt.Sprintf("TW%d", rand.IntN(400)), EndAt: &end})
		if err != nil {
			t.Fatal(err)
		}
		starts[i] = task
		w.enqueue(task)
		if i%10 == 0 {
			w.enqueue(task) // while the first is queued: refused (one task per request ID)
		}
	}
	w.waitOutcomes(jobs.TypeSessionStart, n, time.Minute)

	// Stops for every session, each sent twice under its request ID, and some
	// sessions stopped again under another.
	var sessions []repo.Session
	if err := w.store.DB.NewSelect().Model(&sessions).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sessions) == 0 {
		t.Fatal("no start was applied")
	}
	stops := 0
	for i, s := range sessions {
		for k := range 1 + i%2 {
			task, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: fmt.Sprintf("three-stop-%d-%d", s.ID, k), SessionID: repo.FormatID(s.ID)})
			if err != nil {
				t.Fatal(err)
			}
			w.enqueue(task)
			w.enqueue(task)
			stops++
		}
	}
	w.waitOutcomes(jobs.TypeSessionStop, stops, time.Minute)

	// Every start delivered again, after its task was done and gone: each finds
	// its outcome and changes nothing.
	duplicates := func() int {
		sum := 0
		for _, port := range ports {
			sum += scrape(t, port, `parkd_requests_total{`, `type="session:start"`, `outcome="duplicate"`)
		}
		return sum
	}
	w.waitQueueDrained(insp)
	before := duplicates()
	for _, task := range starts {
		w.enqueue(task)
	}
	waitUntil(t, time.Minute, "the redelivered starts done", func() bool { return duplicates() == before+n })

	// Metrics of the three: every start decided once in all, and by each a share.
	decided := 0
	for i, port := range ports {
		mine := scrape(t, port, `parkd_requests_total{`, `type="session:start"`, `outcome="applied"`) +
			scrape(t, port, `parkd_requests_total{`, `type="session:start"`, `outcome="rejected"`)
		if mine == 0 {
			t.Errorf("worker %d decided no start", i+1)
		}
		t.Logf("worker %d decided %d starts", i+1, mine)
		decided += mine
	}
	if decided != n {
		t.Errorf("the workers decided %d starts in all, want %d: some twice or not at all", decided, n)
	}
	w.checkOnce(jobs.TypeSessionStart, n)
	w.checkOnce(jobs.TypeSessionStop, stops)
	w.audit()
}

// world is a test database with a zone and permits, a Redis index, and what a
// parkd process needs to use them.
type world struct {
	t        *testing.T
	ctx      context.Context
	store    *repo.Store
	dsn      string
	redisURL string
	rdb      *redis.Client
	redisOpt asynq.RedisClientOpt
	client   *asynq.Client
	env      []string
	permits  []string
}

// newWorld issues n permits with hours each, through the handlers.
func newWorld(t *testing.T, n, hours int) *world {
	t.Helper()
	ctx := context.Background()
	store, dsn := repotest.NewDB(t)
	rdb, idx := repotest.NewRedis(t)
	w := &world{t: t, ctx: ctx, store: store, dsn: dsn, rdb: rdb, redisURL: repotest.RedisURL(idx),
		redisOpt: asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}}
	w.client = asynq.NewClient(w.redisOpt)
	t.Cleanup(func() { w.client.Close() })
	w.env = []string{"PARKD_DATABASE_URL=" + dsn, "PARKD_REDIS_URL=" + w.redisURL, "PARKD_STARTUP_WAIT=10s"}

	h := &worker.Handlers{Store: store, Client: w.client, Redis: rdb, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	w.permits = seedPermits(t, ctx, store, h, "OPS", n, hours)
	return w
}

// enqueue hands a task to Redis; one already queued under its ID is refused,
// which is the point of task IDs.
func (w *world) enqueue(task *asynq.Task) {
	w.t.Helper()
	if _, err := w.client.Enqueue(task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		w.t.Fatal(err)
	}
}

func (w *world) count(q string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.store.DB.NewRaw(q, args...).Scan(w.ctx, &n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) waitOutcomes(typ string, n int, limit time.Duration) {
	w.t.Helper()
	waitUntil(w.t, limit, fmt.Sprintf("%d %s outcomes", n, typ), func() bool {
		return w.count("SELECT count(*) FROM requests WHERE type = ? AND status <> 'pending'", typ) == n
	})
}

// checkOnce: n requests of typ, each with one outcome, and no start with more
// than one session.
func (w *world) checkOnce(typ string, n int) {
	w.t.Helper()
	if got := w.count("SELECT count(*) FROM requests WHERE type = ?", typ); got != n {
		w.t.Errorf("%d %s requests recorded, want %d", got, typ, n)
	}
	if typ != jobs.TypeSessionStart {
		return
	}
	applied := w.count("SELECT count(*) FROM requests WHERE type = ? AND status = 'applied'", typ)
	if made := w.count("SELECT count(*) FROM sessions"); made != applied {
		w.t.Errorf("%d starts applied but %d sessions exist", applied, made)
	}
	if dup := w.count("SELECT count(*) FROM (SELECT request_id FROM sessions GROUP BY 1 HAVING count(*) > 1) d"); dup != 0 {
		w.t.Errorf("%d starts made more than one session", dup)
	}
	w.t.Logf("%d of %d starts applied", applied, n)
}

// audit runs `parkd check`'s invariants.
func (w *world) audit() {
	w.t.Helper()
	_, findings, err := repo.Audit(w.ctx, w.store.DB, 2*time.Minute, 20)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, f := range findings {
		w.t.Errorf("parkd check: %s: %s", f.Check, f.Detail)
	}
}

// waitQueueDrained waits until no request task is pending, running or
// retrying (scheduled auto-stops may remain).
func (w *world) waitQueueDrained(insp *asynq.Inspector) {
	w.t.Helper()
	waitUntil(w.t, time.Minute, "the critical queue drained", func() bool {
		q, err := insp.GetQueueInfo(jobs.QueueCritical)
		return err == nil && q.Pending == 0 && q.Active == 0 && q.Retry == 0
	})
}

func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape sums the samples on port's /metrics whose line starts with prefix and
// holds every label in labels.
func scrape(t *testing.T, port int, prefix string, labels ...string) int {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return int(sum)
}

// startParkdLogged is startParkd with the child's log kept in a buffer.
func startParkdLogged(t *testing.T, env []string, args ...string) (*proc, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "PARKD_TEST_RUN_MAIN=1", "PARKD_TEST_ARGS="+strings.Join(args, " "))...)
	cmd.Stderr = buf
	if testing.Verbose() {
		cmd.Stderr = io.MultiWriter(buf, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd}
	t.Cleanup(func() { p.kill() })
	return p, buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seedPermits creates zone code (valid every day) with n addresses, a resident
// registered at each, and a permit with hours bought on each, through the
// worker's own handlers; it returns the permit IDs (1..n on a fresh database).
func seedPermits(t *testing.T, ctx context.Context, store *repo.Store, h *worker.Handlers, code string, n, hours int) []string {
	t.Helper()
	z, err := domain.CompileZone(code, domain.ZoneSpec{Name: code, TariffCentsPerHour: 100, InvalidWeekdays: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(ctx, store.DB, z); err != nil {
		t.Fatal(err)
	}
	permits := make([]string, n)
	for i := range n {
		addr, res := fmt.Sprintf("%sA%d", code[:1], i), fmt.Sprintf("%sR%d", code[:1], i)
		if err := repo.PutAddress(ctx, store.DB, &repo.Address{ID: addr, Zone: &code}); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.PutRegistration(ctx, store.DB, &repo.Registration{ResidentID: res, AddressID: addr}); err != nil {
			t.Fatal(err)
		}
		task, _ := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: "issue-" + addr, ResidentID: res, AddressID: addr})
		if err := h.PermitIssue(ctx, task); err != nil {
			t.Fatal(err)
		}
		permits[i] = repo.FormatID(int64(i + 1))
		task, _ = jobs.NewPermitTopup(jobs.PermitTopup{RequestID: "topup-" + addr, PermitID: permits[i], Hours: hours, PaymentRef: "pay-" + addr})
		if err := h.PermitTopup(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	return permits
}
