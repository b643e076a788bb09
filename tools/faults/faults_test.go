//go:build linux

package faults

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestRedisRestartFlushed(t *testing.T) {
	if err := RedisAvailable(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	began := time.Now()
	r, err := StartRedis(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	t.Logf("redis on %s started in %v", r.Addr(), time.Since(began).Round(time.Millisecond))

	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.Set(ctx, "permit:1", "AB-123", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A dump on disk must not bring the key back: the restart is a Redis
	// that lost everything, whatever a client asked it to save.
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	if err := r.RestartFlushed(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("RestartFlushed took %v", time.Since(began).Round(time.Millisecond))

	// The same client reconnects to the same address and finds nothing.
	if got, err := c.Get(ctx, "permit:1").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after RestartFlushed = %q, %v; want redis.Nil", got, err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after RestartFlushed = %d, %v; want 0", n, err)
	}

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, r.Addr())
	if err := r.RestartFlushed(ctx); err == nil {
		t.Error("RestartFlushed after Stop succeeded")
	}
}

func TestPostgresRestartAndKill(t *testing.T) {
	if err := PostgresAvailable(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	began := time.Now()
	p, err := StartPostgres(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	t.Logf("postgres on %s (cluster %s) initdb+start in %v", p.Addr(), p.dataDir, time.Since(began).Round(time.Millisecond))

	conn := connect(ctx, t, p)
	mustExec(ctx, t, conn, `CREATE TABLE permits (id int PRIMARY KEY, plate text NOT NULL)`)
	mustExec(ctx, t, conn, `INSERT INTO permits VALUES (1, 'AB-123')`)

	began = time.Now()
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart (fast) took %v", time.Since(began).Round(time.Millisecond))

	// The old session died with the server: proof the restart was real.
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("query on a connection from before Restart succeeded")
	}
	conn = connect(ctx, t, p)
	var plate string
	if err := conn.QueryRow(ctx, `SELECT plate FROM permits WHERE id = 1`).Scan(&plate); err != nil || plate != "AB-123" {
		t.Fatalf("row after Restart = %q, %v; want AB-123", plate, err)
	}

	// A committed row survives SIGKILL of every server process, and no
	// process of the old server outlives Kill.
	mustExec(ctx, t, conn, `INSERT INTO permits VALUES (2, 'CD-456')`)
	old := append(descendants(p.srv.cmd.Process.Pid), procID{pid: p.srv.cmd.Process.Pid})
	if len(old) < 3 {
		t.Fatalf("want a postmaster and its auxiliary processes, found %d processes", len(old))
	}
	old[len(old)-1].start = startTime(t, old[len(old)-1].pid)
	began = time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kill took %v", time.Since(began).Round(time.Millisecond))
	for _, c := range old {
		if c.alive() {
			t.Errorf("process %d of the killed server is still alive", c.pid)
		}
	}
	began = time.Now()
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart after Kill (crash recovery) took %v", time.Since(began).Round(time.Millisecond))
	conn = connect(ctx, t, p)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM permits`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after Kill and Restart = %d, %v; want 2", n, err)
	}
	if log, err := os.ReadFile(p.logPath); err != nil || !strings.Contains(string(log), "was interrupted") {
		t.Errorf("no crash recovery in the server log (%v)", err)
	}
	conn.Close(ctx)

	began = time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %v", time.Since(began).Round(time.Millisecond))
	assertClosed(t, p.Addr())
	if p.tmpHome {
		if _, err := os.Stat(p.home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cluster %s left behind after Stop (%v)", p.home, err)
		}
	}
}

func TestPostgresAvailableSaysWhatIsMissing(t *testing.T) {
	t.Setenv("PARKD_PG_BINDIR", "/nonexistent")
	err := PostgresAvailable()
	if err == nil || !strings.Contains(err.Error(), "PARKD_PG_BINDIR") {
		t.Fatalf("PostgresAvailable with a bad PARKD_PG_BINDIR = %v; want an error naming it", err)
	}
}

func connect(ctx context.Context, t *testing.T, p *Postgres) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func startTime(t *testing.T, pid int) string {
	t.Helper()
	_, _, start, ok := procStat(pid)
	if !ok {
		t.Fatalf("no /proc entry for %d", pid)
	}
	return start
}

func assertClosed(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}
}
