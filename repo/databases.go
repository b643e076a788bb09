package repo

import (
	"context"
	"fmt"
	"regexp"

	"github.com/uptrace/bun"
)

// Whole databases are made and dropped only by the lab (tools/): the bench's
// database, pgbench's, a chaos run's. db is a connection to another database
// of the same server (usually "postgres"), outside any transaction: Postgres
// creates and drops databases only there.

var databaseNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// RecreateDatabase drops database name (closing its connections) and creates
// it empty.
func RecreateDatabase(ctx context.Context, db bun.IDB, name string) error {
	if err := DropDatabase(ctx, db, name); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE ?", bun.Ident(name)); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, closing its connections, if it exists.
func DropDatabase(ctx context.Context, db bun.IDB, name string) error {
	if !databaseNameRE.MatchString(name) {
		return fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
	}
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS ? WITH (FORCE)", bun.Ident(name)); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
