package parkdbench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
)

// The bench reads and writes Postgres only where parkd's API cannot: creating
// its own databases, and reading back when each auto-stop was settled.

var dbNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// withDB is dsn pointing at database name on the same server.
func withDB(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("database URL: want postgres://, not %q", u.Scheme)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// recreateDB drops database name (closing its connections) and creates it
// empty, on the server of dsn.
func recreateDB(ctx context.Context, dsn, name string) (string, error) {
	if !dbNameRE.MatchString(name) {
		return "", fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
	}
	if err := adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)", "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("recreate database %s: %w", name, err)
	}
	return withDB(dsn, name)
}

// dropDB drops database name on the server of dsn.
func dropDB(ctx context.Context, dsn, name string) error {
	if !dbNameRE.MatchString(name) {
		return fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
	}
	if err := adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func adminExec(ctx context.Context, dsn string, stmts ...string) error {
	admin, err := withDB(dsn, "postgres")
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// testClaimKey is the key repo/repotest holds in a Redis index a test process
// has claimed; flushing such an index would pull a running test's queue away.
const testClaimKey = "parkd:test:claim"

// flushRedis empties the Redis database of rawURL (redis:// or rediss://),
// refusing an index a running test has claimed unless allowClaimed.
func flushRedis(ctx context.Context, rawURL string, allowClaimed bool) (int, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return 0, fmt.Errorf("redis URL: %w", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if !allowClaimed {
		n, err := c.Exists(ctx, testClaimKey).Result()
		if err != nil {
			return opt.DB, fmt.Errorf("redis %s: %w", opt.Addr, err)
		}
		if n > 0 {
			return opt.DB, fmt.Errorf("redis %s index %d is claimed by a running test (%s); choose another with --redis-url", opt.Addr, opt.DB, testClaimKey)
		}
	}
	if err := c.FlushDB(ctx).Err(); err != nil {
		return opt.DB, fmt.Errorf("redis %s index %d: FLUSHDB: %w", opt.Addr, opt.DB, err)
	}
	return opt.DB, nil
}

// AutostopResult is how late the sessions left to their auto-stop were settled.
type AutostopResult struct {
	Sessions  int     `json:"sessions"`   // left to their auto-stop
	Settled   int     `json:"settled"`    // settled when the wait ended
	Unsettled int     `json:"unsettled"`  // still open then, planned end passed
	WaitedSec float64 `json:"waited_s"`   // how long the bench waited after the phases
	Early     int     `json:"early"`      // settled before their planned end
	Lateness  Spread  `json:"lateness_s"` // settled_at - planned_end_at, seconds
}

// waitAutostops waits (up to limit) until every one of ids whose planned end
// has passed is settled, then reads settled_at - planned_end_at of each.
func waitAutostops(ctx context.Context, dsn string, ids []int64, limit time.Duration, progress func(open, overdue int, left time.Duration)) (AutostopResult, error) {
	res := AutostopResult{Sessions: len(ids)}
	if len(ids) == 0 {
		return res, nil
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return res, fmt.Errorf("autostop: %w", err)
	}
	defer db.Close()
	// Queries outlive an interrupt: what was settled so far is still worth reporting.
	qctx := context.WithoutCancel(ctx)
	t0 := time.Now()
	deadline := t0.Add(limit)
	lastSaid := t0
	for {
		var open, overdue int
		err := db.QueryRowContext(qctx, `SELECT count(*) FILTER (WHERE state = 'open'),
			count(*) FILTER (WHERE state = 'open' AND planned_end_at <= now())
			FROM sessions WHERE id = ANY($1)`, ids).Scan(&open, &overdue)
		if err != nil {
			return res, fmt.Errorf("autostop: count open sessions: %w", err)
		}
		// Done when nothing is open; or, at the deadline, with what is overdue
		// counted as unsettled.
		if open == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			res.Unsettled = overdue
			break
		}
		if progress != nil && time.Since(lastSaid) >= 15*time.Second {
			progress(open, overdue, time.Until(deadline).Round(time.Second))
			lastSaid = time.Now()
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	res.WaitedSec = time.Since(t0).Seconds()
	rows, err := db.QueryContext(qctx, `SELECT extract(epoch FROM settled_at - planned_end_at)::float8
		FROM sessions WHERE id = ANY($1) AND settled_at IS NOT NULL`, ids)
	if err != nil {
		return res, fmt.Errorf("autostop: read lateness: %w", err)
	}
	defer rows.Close()
	var late []float64
	for rows.Next() {
		var s float64
		if err := rows.Scan(&s); err != nil {
			return res, fmt.Errorf("autostop: read lateness: %w", err)
		}
		late = append(late, s)
		if s < 0 {
			res.Early++
		}
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("autostop: read lateness: %w", err)
	}
	res.Settled = len(late)
	res.Lateness = SpreadOf(late)
	return res, nil
}
