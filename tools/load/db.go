package load

import (
	"context"
	"fmt"
	"net/url"

	"github.com/parkd/parkd/repo"
)

// The lab makes its own databases on a server it is given (the bench's, a
// chaos run's private one), through repo like everything that speaks SQL.

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

// RecreateDB drops database name (closing its connections) and creates it
// empty, on the server of dsn, and returns its URL.
func RecreateDB(ctx context.Context, dsn, name string) (string, error) {
	if err := onServer(ctx, dsn, func(st *repo.Store) error { return repo.RecreateDatabase(ctx, st.DB, name) }); err != nil {
		return "", fmt.Errorf("recreate database %s: %w", name, err)
	}
	return withDB(dsn, name)
}

// DropDB drops database name on the server of dsn.
func DropDB(ctx context.Context, dsn, name string) error {
	return onServer(ctx, dsn, func(st *repo.Store) error { return repo.DropDatabase(ctx, st.DB, name) })
}

// onServer runs fn on a connection to the "postgres" database of dsn's server.
func onServer(ctx context.Context, dsn string, fn func(*repo.Store) error) error {
	admin, err := withDB(dsn, "postgres")
	if err != nil {
		return err
	}
	st, err := repo.Open(admin, repo.PoolConfig{MaxConns: 1})
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}
