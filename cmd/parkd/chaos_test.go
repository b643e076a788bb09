package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// TestMain lets the test binary be parkd itself: a child started with
// PARKD_TEST_RUN_MAIN=1 runs main() with its arguments, so tests can kill a real
// parkd process without building one first.
func TestMain(m *testing.M) {
	if os.Getenv("PARKD_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"parkd"}, strings.Fields(os.Getenv("PARKD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// selfCommand is a command that runs this test binary as `parkd args...`
// (see TestMain).
func selfCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PARKD_TEST_RUN_MAIN=1", "PARKD_TEST_ARGS="+strings.Join(args, " "))
	return cmd
}

type proc struct {
	t   *testing.T
	cmd *exec.Cmd
}

func startParkd(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := selfCommand(args...)
	cmd.Env = append(cmd.Env, env...)
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// A worker SIGKILLed twice under load, then Redis flushed: every request still
// gets exactly one outcome, every session is settled, and every permit's
// balance equals the sum of its ledger.
func TestWorkerKilledUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about two minutes: asynq recovers a killed worker's tasks only after their 30 s lease and a 1 min recoverer tick")
	}
	// Most of its minute is waiting for asynq's recoverer: the package's
	// other parallel test (the help of every command, which touches neither
	// Postgres nor Redis) runs meanwhile. No other test of the package may
	// run beside it with Redis: the test process has one Redis index.
	t.Parallel()
	ctx := context.Background()
	store, dsn := repotest.NewDB(t)
	rdb, idx := repotest.NewRedis(t)
	redisOpt := asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}
	client := asynq.NewClient(redisOpt)
	defer client.Close()
	h := &worker.Handlers{Store: store, Client: client, Redis: rdb, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	permits := seedPermits(t, ctx, store, h, "CHAOS", 40, 3)

	env := []string{
		"PARKD_DATABASE_URL=" + dsn,
		fmt.Sprintf("PARKD_REDIS_URL=redis://%s/%d", repotest.RedisAddr(), idx),
		"PARKD_DELAYED_TASK_CHECK_INTERVAL=200ms",
	}
	w := startParkd(t, env, "worker")

	// Load: 800 starts over 40 permits of 180 minutes each (so balances run out
	// and plates collide), ending within seconds, and stops for some of them.
	const n = 800
	startIDs := make([]string, n)
	for i := range n {
		end := time.Now().Add(time.Duration(2000+rand.IntN(6000)) * time.Millisecond)
		startIDs[i] = fmt.Sprintf("chaos-start-%d", i)
		task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: startIDs[i], PermitID: permits[i%len(permits)],
			Plate: fmt.Sprintf("P%d", rand.IntN(300)), EndAt: &end})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
		if i == n/3 || i == 2*n/3 {
			w.kill()
			w = startParkd(t, env, "worker")
		}
	}
	// Stops for the sessions applied so far, some of them twice.
	var sessions []repo.Session
	if err := store.DB.NewSelect().Model(&sessions).Limit(200).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	for i, s := range sessions {
		for r := range 1 + i%2 {
			task, _ := jobs.NewSessionStop(jobs.SessionStop{RequestID: fmt.Sprintf("chaos-stop-%d-%d", s.ID, r), SessionID: repo.FormatID(s.ID)})
			if _, err := client.Enqueue(task); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	w.kill()
	w = startParkd(t, env, "worker")

	// Every start reaches an outcome once asynq has recovered the killed
	// worker's in-flight tasks.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var done int
		if err := store.DB.NewRaw("SELECT count(*) FROM requests WHERE type = ? AND status <> 'pending'", jobs.TypeSessionStart).Scan(ctx, &done); err != nil {
			t.Fatal(err)
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d starts have an outcome after 3 minutes", done, n)
		}
		time.Sleep(time.Second)
	}
	// Redis loses everything; the reconciler (run here as the scheduler would)
	// settles what is overdue and queues the rest again.
	repotest.FlushRedis(t, rdb)
	h.ReconcileGrace = time.Second
	deadline = time.Now().Add(2 * time.Minute)
	for {
		if _, err := h.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		var open int
		if err := store.DB.NewRaw("SELECT count(*) FROM sessions WHERE state = 'open'").Scan(ctx, &open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", open)
		}
		time.Sleep(time.Second)
	}
	w.kill()

	bad, err := repo.LedgerMismatches(ctx, store.DB)
	if err != nil || len(bad) > 0 {
		t.Fatalf("ledger invariant broken: %+v %v", bad, err)
	}
	var dup int
	if err := store.DB.NewRaw("SELECT count(*) FROM (SELECT request_id FROM sessions GROUP BY 1 HAVING count(*) > 1) d").Scan(ctx, &dup); err != nil || dup != 0 {
		t.Fatalf("%d start requests made more than one session (%v)", dup, err)
	}
	var applied, made int
	if err := store.DB.NewRaw("SELECT count(*) FROM requests WHERE type = ? AND status = 'applied'", jobs.TypeSessionStart).Scan(ctx, &applied); err != nil {
		t.Fatal(err)
	}
	if err := store.DB.NewRaw("SELECT count(*) FROM sessions").Scan(ctx, &made); err != nil {
		t.Fatal(err)
	}
	if applied != made {
		t.Fatalf("%d starts applied but %d sessions exist", applied, made)
	}
	var late int
	if err := store.DB.NewRaw("SELECT count(*) FROM sessions WHERE end_at > planned_end_at OR charged_minutes > reserved_minutes").Scan(ctx, &late); err != nil || late != 0 {
		t.Fatalf("%d sessions charged past their planned end (%v)", late, err)
	}
	_, findings, err := repo.Audit(ctx, store.DB, 2*time.Minute, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("parkd check: %s: %s", f.Check, f.Detail)
	}
	t.Logf("%d starts applied, %d rejected by rules", applied, n-applied)
}
