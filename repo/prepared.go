package repo

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// Prepared statements for the hot path (issue 16). bun writes every argument
// into the SQL text, and parkd's connections speak pgx's simple protocol, so
// Postgres parses and plans each statement afresh: for the statements every
// start and stop runs, planning was over a third of Postgres's time
// (docs/BENCHMARKS.md, "Issue 16"). A statement written here with $1…
// parameters and run through queryPrepared is prepared once per connection
// (pgx's statement cache, QueryExecModeCacheStatement) and then only bound
// and executed, on its generic plan (the pool forces it: db.go). Everything
// else keeps bun's query builder, where it reads better and runs rarely.

// queryPrepared runs query (SQL with $1… parameters) on db as a prepared
// statement, in db's transaction when db is one.
func queryPrepared(ctx context.Context, db bun.IDB, query string, args ...any) (*sql.Rows, error) {
	r, err := runnerOf(db)
	if err != nil {
		return nil, err
	}
	return r.QueryContext(ctx, query, preparedArgs(args)...)
}

// runner is what database/sql's DB, Tx and Conn share: bun's wrappers would
// write the arguments into the text.
type runner interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// runnerOf is the database/sql handle under db: its transaction when db is one.
func runnerOf(db bun.IDB) (runner, error) {
	switch c := db.(type) {
	case Tx:
		return c.Tx.Tx, nil
	case bun.Tx:
		return c.Tx, nil
	case *bun.DB:
		return c.DB, nil
	case bun.Conn:
		return c.Conn, nil
	}
	return nil, fmt.Errorf("repo: %T cannot run a prepared statement", db)
}

// preparedArgs are args with pgx's mode for a statement it prepares once per
// connection and keeps.
func preparedArgs(args []any) []any {
	all := make([]any, 0, len(args)+1)
	all = append(all, pgx.QueryExecModeCacheStatement)
	return append(all, args...)
}

// scanPrepared runs query as queryPrepared does and scans its rows into dest
// as bun scans a model (a struct, a slice of them, or columns' values).
func scanPrepared(ctx context.Context, db bun.IDB, query string, args []any, dest ...any) error {
	rows, err := queryPrepared(ctx, db, query, args...)
	if err != nil {
		return err
	}
	return db.NewRaw("").DB().ScanRows(ctx, rows, dest...)
}

// getPrepared reads the one row of T that query (with $1… parameters)
// selects, as a prepared statement: ErrNotFound, naming what, when there is
// none.
func getPrepared[T any](ctx context.Context, db bun.IDB, what, query string, args ...any) (*T, error) {
	var rows []T
	if err := scanPrepared(ctx, db, query, args, &rows); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(rows) == 0 {
		return nil, notFound(sql.ErrNoRows, what)
	}
	return &rows[0], nil
}

// execPrepared runs query (with $1… parameters) as a prepared statement and
// reports how many rows it changed.
func execPrepared(ctx context.Context, db bun.IDB, query string, args ...any) (int64, error) {
	r, err := runnerOf(db)
	if err != nil {
		return 0, err
	}
	res, err := r.ExecContext(ctx, query, preparedArgs(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// columns is the select list of T's stored columns, as bun models T (its
// fields but the scan-only ones), each prefixed with alias and a dot when
// alias is given. Statements name their columns rather than select *: a
// column a later migration adds must not reach code that does not know it
// (bun refuses to scan a column its model lacks), nor change the result of a
// statement Postgres has prepared ("cached plan must not change result
// type"). Deployments migrate before the new code runs (deploy/README.md).
func columns[T any](db bun.IDB, alias string) string { return aliasedColumns[T](db, alias, "") }

// aliasedColumns is columns[T] with each column renamed prefix+name (AS)
// when prefix is not "", for a statement that reads two tables' rows into
// one struct of fields tagged bun:"embed:prefix".
func aliasedColumns[T any](db bun.IDB, alias, prefix string) string {
	key := columnsKey{reflect.TypeFor[T](), alias, prefix}
	if v, ok := columnLists.Load(key); ok {
		return v.(string)
	}
	fields := db.Dialect().Tables().Get(key.typ).Fields
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = string(f.SQLName)
		if alias != "" {
			names[i] = alias + "." + names[i]
		}
		if prefix != "" {
			names[i] += " AS " + prefix + f.Name
		}
	}
	list := strings.Join(names, ", ")
	columnLists.Store(key, list)
	return list
}

type columnsKey struct {
	typ           reflect.Type
	alias, prefix string
}

var columnLists sync.Map // columnsKey → string
