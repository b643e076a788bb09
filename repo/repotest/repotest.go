// Package repotest gives each integration test its own Postgres database, cloned
// from a migrated template, and its own Redis database index, so tests never
// touch a developer's running parkd nor each other.
package repotest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver for the admin connection
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// AdminURL is the Postgres server tests create their databases on.
func AdminURL() string {
	if u := os.Getenv("PARKD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisAddr is the Redis server tests use (host:port).
func RedisAddr() string {
	if a := os.Getenv("PARKD_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func withDB(u, name string) string {
	p, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	p.Path = "/" + name
	return p.String()
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// template creates (once per schema, across processes) a migrated database to
// clone from. Cloning a template takes ~50 ms; migrating from scratch much more.
func template(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		templateName = "parkd_tmpl_" + repo.SchemaFingerprint()
		admin, err := sql.Open("pgx", AdminURL())
		if err != nil {
			templateErr = err
			return
		}
		defer admin.Close()
		conn, err := admin.Conn(ctx)
		if err != nil {
			templateErr = fmt.Errorf("connect to test postgres %s: %w", AdminURL(), err)
			return
		}
		defer conn.Close()
		// Test binaries of several packages run at once: one builds the template.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(8675309)"); err != nil {
			templateErr = err
			return
		}
		defer conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(8675309)") //nolint:errcheck
		var exists bool
		if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", templateName).Scan(&exists); err != nil {
			templateErr = err
			return
		}
		if exists {
			return
		}
		build := templateName + "_build"
		_, _ = conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+build)
		if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+build); err != nil {
			templateErr = err
			return
		}
		st, err := repo.Open(withDB(AdminURL(), build), repo.PoolConfig{MaxConns: 2})
		if err != nil {
			templateErr = err
			return
		}
		_, err = st.Migrate(ctx)
		st.Close()
		if err != nil {
			templateErr = fmt.Errorf("migrate template: %w", err)
			return
		}
		for _, q := range []string{
			"ALTER DATABASE " + build + " RENAME TO " + templateName,
			"ALTER DATABASE " + templateName + " WITH is_template true",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				templateErr = err
				return
			}
		}
	})
	return templateName, templateErr
}

// NewDB returns a Store on a fresh, migrated database of its own, dropped when
// the test ends.
func NewDB(t testing.TB) (*repo.Store, string) {
	t.Helper()
	ctx := context.Background()
	tmpl, err := template(ctx)
	if err != nil {
		t.Fatalf("test database template: %v", err)
	}
	name := fmt.Sprintf("parkd_test_%d_%08x", time.Now().Unix(), rand.Uint32())
	admin, err := sql.Open("pgx", AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	dsn := withDB(AdminURL(), name)
	st, err := repo.Open(dsn, repo.PoolConfig{MaxConns: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		a, err := sql.Open("pgx", AdminURL())
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return st, dsn
}

const (
	ownedKey = "parkd:test:owned" // marks a Redis DB index as one tests may flush
	claimKey = "parkd:test:claim" // held (with a TTL) by the test process using it
)

var (
	redisMu    sync.Mutex
	redisIdx   = -1
	redisToken string
)

// The claim on an index is short-lived and renewed while the test process runs,
// so an index is free again seconds after its process exits, however it exits.
const claimTTL = 20 * time.Second

func holdClaim(idx int, token string) {
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: idx})
	for range time.Tick(claimTTL / 4) {
		redisMu.Lock()
		c.Set(context.Background(), claimKey, token, claimTTL)
		redisMu.Unlock()
	}
}

// NewRedis returns a client on a Redis database index of this test process's own,
// flushed for this test. Indexes 1–15 are tried; one is taken only when it is
// empty or marked as a test index, so a developer's parkd (index 0 by default,
// or any index holding its data) is never touched.
func NewRedis(t testing.TB) (*redis.Client, int) {
	t.Helper()
	ctx := context.Background()
	redisMu.Lock()
	defer redisMu.Unlock()
	if redisIdx < 0 {
		token := fmt.Sprintf("%d-%d", os.Getpid(), rand.Uint64())
		for i := 1; i < 16 && redisIdx < 0; i++ {
			c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: i})
			n, err := c.DBSize(ctx).Result()
			if err != nil {
				c.Close()
				t.Fatalf("redis at %s: %v", RedisAddr(), err)
			}
			owned := c.Exists(ctx, ownedKey).Val() == 1
			if (n == 0 || owned) && c.SetNX(ctx, claimKey, token, claimTTL).Val() {
				redisIdx, redisToken = i, token
				go holdClaim(i, token)
			}
			c.Close()
		}
		if redisIdx < 0 {
			t.Fatalf("no free Redis database index on %s for tests (1-15 all in use)", RedisAddr())
		}
	}
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: redisIdx})
	// The flush and the claim in one MULTI: between a bare FLUSHDB and the
	// claim set again, another test process looking for a free index saw this
	// one empty, claimed it too, and the two flushed each other's queues
	// (requests left pending in both).
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, ownedKey, "1", 0)
		p.Set(ctx, claimKey, redisToken, claimTTL)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, redisIdx
}

// FlushRedis empties the test process's Redis index as Redis losing its data
// would (a test of the reconciler), keeping the process's claim on it in the
// same MULTI: a bare FLUSHDB would leave the index looking free to another
// test process for a moment, and the two would then share it.
func FlushRedis(t testing.TB, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	redisMu.Lock()
	token := redisToken
	redisMu.Unlock()
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, ownedKey, "1", 0)
		p.Set(ctx, claimKey, token, claimTTL)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// RedisURL is the redis:// URL of a test index.
func RedisURL(idx int) string { return fmt.Sprintf("redis://%s/%d", RedisAddr(), idx) }

// MarkRightChanged makes a session's right as a change of the session does
// (README "Pointing parkd at a register"): the zone's register codes on the
// session (kept if it has them), right_version one up, right_changed_at at.
// It returns the new version. Tests of the registrar use it where the change
// itself is not what they test.
func MarkRightChanged(t testing.TB, st *repo.Store, sessionID int64, reg domain.ZoneRegistration, at time.Time) int {
	t.Helper()
	codes, err := json.Marshal(reg)
	if err != nil {
		t.Fatal(err)
	}
	var version int
	err = st.DB.NewRaw(`UPDATE sessions SET registration = coalesce(registration, ?::jsonb),
		right_version = right_version + 1, right_changed_at = ?
		WHERE id = ? RETURNING right_version`, string(codes), at, sessionID).Scan(context.Background(), &version)
	if err != nil {
		t.Fatalf("mark the right of session %d changed: %v", sessionID, err)
	}
	return version
}
