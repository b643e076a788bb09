package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/parkd/parkd/domain"
)

// ErrNotFound is returned when a row that a request names does not exist.
var ErrNotFound = errors.New("repo: not found")

// PoolConfig sizes the connection pool.
type PoolConfig struct {
	MaxConns        int
	ConnMaxLifetime time.Duration
}

// Store is the database handle the rest of parkd uses.
type Store struct {
	DB *bun.DB

	zoneMu sync.Mutex
	zones  map[string]cachedZone
}

type cachedZone struct {
	updatedAt time.Time
	zone      *domain.Zone
}

// Open connects to Postgres through pgx's database/sql driver and bun's Postgres
// dialect. It does not wait for the server: call Ping for that.
func Open(url string, pool PoolConfig) (*Store, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("PARKD_DATABASE_URL: %w", err)
	}
	// bun renders every argument into the SQL text itself, so each statement is
	// new text: pgx's default (prepare and cache each statement) would parse,
	// describe, evict and DEALLOCATE on almost every query (measured: a third of
	// the worker's CPU). The simple protocol sends the text once, one round trip.
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	// The statements parkd prepares (prepared.go) are written for their
	// generic plan: each row of a batch's arrays is a lookup by key. Postgres
	// would plan a statement over an array afresh at every run (it compares
	// the generic plan, costed for a hundred elements, with a custom plan
	// that sees the few a batch has, and keeps choosing the custom one):
	// planning was a quarter of Postgres's time in the batches of
	// acknowledgements and deliveries, and in the prelocks (issue 16, sixth
	// session). Text statements (bun's) are planned with their values
	// whatever this says. A value the URL gives wins, as a parameter of its
	// own (?plan_cache_mode=auto) or in its options (-c plan_cache_mode=…,
	// also from PGOPTIONS): Postgres would apply a separate parameter after
	// the options. Being the client's, it also wins over the database's own
	// setting (ALTER DATABASE … SET).
	_, own := cc.RuntimeParams["plan_cache_mode"]
	if !own && !strings.Contains(cc.RuntimeParams["options"], "plan_cache_mode") {
		cc.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	sqldb := stdlib.OpenDB(*cc)
	if pool.MaxConns <= 0 {
		pool.MaxConns = 25
	}
	sqldb.SetMaxOpenConns(pool.MaxConns)
	// database/sql keeps 2 idle connections by default: with 20 workers that
	// reconnects on almost every transaction (measured ~5x slower).
	sqldb.SetMaxIdleConns(pool.MaxConns)
	if pool.ConnMaxLifetime > 0 {
		sqldb.SetConnMaxLifetime(pool.ConnMaxLifetime)
	}
	return &Store{DB: bun.NewDB(sqldb, pgdialect.New()), zones: map[string]cachedZone{}}, nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.DB.Close() }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.DB.PingContext(ctx) }

// InTx runs fn in one transaction of its own, whose locks wait for their
// holders (WaitForLocks): committed when fn returns nil, rolled back otherwise
// (and on panic).
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error {
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return fn(ctx, Tx{Tx: tx, Locks: WaitForLocks})
	})
}

// IsUnavailable reports whether err means Postgres could not be reached or did
// not answer in time (as opposed to a query it refused), so that callers can
// answer "try again later" instead of "our bug".
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) {
		return true
	}
	switch code := pgCode(err); {
	case len(code) == 5 && (code[:2] == "08" || code[:2] == "53"): // connection exception, insufficient resources
		return true
	case code == "57P01" || code == "57P02" || code == "57P03": // shutting down, cannot connect now
		return true
	}
	return false
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// FormatID renders a numeric ID as the string the contract uses.
func FormatID(id int64) string { return strconv.FormatInt(id, 10) }

// ParseID reads a contract ID; anything that is not a positive integer names no row.
func ParseID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0 && FormatID(id) == s
}
