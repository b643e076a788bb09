package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// `parkd retention` with PARKD_PLATE_RETENTION=1m erases the plate of a
// session that ended five minutes ago, keeps the one of a session still open,
// prints the counts, and `parkd check` holds afterwards.
func TestRetentionCommand(t *testing.T) {
	ctx := context.Background()
	store, dsn := repotest.NewDB(t)
	rdb, idx := repotest.NewRedis(t)
	h := &worker.Handlers{Store: store, Redis: rdb, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	permits := seedPermits(t, ctx, store, h, "RET", 1, 5)
	ago := time.Now().Add(-10 * time.Minute)
	start, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: "start-old", PermitID: permits[0], Plate: "RETOLD1", ReceivedAt: ago})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SessionStart(ctx, start); err != nil {
		t.Fatal(err)
	}
	stop, _ := jobs.NewSessionStop(jobs.SessionStop{RequestID: "stop-old", SessionID: "1", ReceivedAt: ago.Add(5 * time.Minute)})
	if err := h.SessionStop(ctx, stop); err != nil {
		t.Fatal(err)
	}
	open, _ := jobs.NewSessionStart(jobs.SessionStart{RequestID: "start-open", PermitID: permits[0], Plate: "RETOPEN1"})
	if err := h.SessionStart(ctx, open); err != nil {
		t.Fatal(err)
	}

	env := []string{"PARKD_DATABASE_URL=" + dsn, fmt.Sprintf("PARKD_REDIS_URL=redis://%s/%d", repotest.RedisAddr(), idx),
		"PARKD_STARTUP_WAIT=5s", "PARKD_PLATE_RETENTION=1m"}
	stdout, stderr, code := runParkd(t, env, "retention")
	if code != 0 || !strings.Contains(stdout, "sessions erased: 1\n") || !strings.Contains(stdout, "request rows rewritten: 2\n") ||
		!strings.Contains(stdout, "redis tasks deleted: 0\n") {
		t.Fatalf("retention: exit %d:\n%s%s", code, stdout, stderr)
	}
	for id, want := range map[int64]string{1: "", 2: "RETOPEN1"} {
		if s, err := repo.GetSession(ctx, store.DB, id); err != nil || s.Plate != want {
			t.Fatalf("session %d: %+v %v, want plate %q", id, s, err, want)
		}
	}
	if stdout, stderr, code := runParkd(t, env, "check"); code != 0 {
		t.Fatalf("check after retention: exit %d:\n%s%s", code, stdout, stderr)
	}
}
