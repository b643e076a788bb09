package repo

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"time"

	"github.com/uptrace/bun/migrate"
)

//go:embed migrations/*.sql
var sqlMigrations embed.FS

// migrationLockKey is the pg_advisory_lock key that serialises migrating
// processes ('parkd' in ASCII). bun's own lock is a table row that fails the
// second process instead of making it wait; the advisory lock makes it wait and
// then find nothing left to do.
const migrationLockKey = 0x7061726b64

// Migrate brings the schema up to date. Each migration runs in its own
// transaction and is marked applied only after it succeeded; two processes
// migrating at once serialise on an advisory lock.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrationLockKey); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", migrationLockKey) //nolint:errcheck // the lock goes with the connection anyway

	_, m, err := s.migrator()
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("migrate: init: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var applied []string
	for _, mg := range group.Migrations {
		applied = append(applied, mg.Name)
	}
	return applied, nil
}

// migrator is the embedded migrations and bun's migrator over them.
func (s *Store) migrator() (*migrate.Migrations, *migrate.Migrator, error) {
	files, err := fs.Sub(sqlMigrations, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(files); err != nil {
		return nil, nil, fmt.Errorf("migrate: discover: %w", err)
	}
	return migrations, migrate.NewMigrator(s.DB, migrations, migrate.WithMarkAppliedOnSuccess(true)), nil
}

// MigrationState is a migration and whether the database has it.
type MigrationState struct {
	Name string // e.g. 20261124000001_init
	// AppliedAt is when it was applied; zero while it is pending.
	AppliedAt time.Time
	// Unknown is a migration the database has that this parkd does not embed:
	// a newer release migrated it.
	Unknown bool
}

// MigrationStatus lists the migrations parkd embeds, oldest first, each
// applied or pending, then those the database has that parkd does not know. It
// changes nothing: on a database never migrated, every migration is pending.
func (s *Store) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	migrations, m, err := s.migrator()
	if err != nil {
		return nil, err
	}
	// bun's table of applied migrations, which Migrate creates: without it,
	// nothing is applied (and asking bun would fail).
	var tracked bool
	if err := s.DB.NewRaw("SELECT to_regclass('bun_migrations') IS NOT NULL").Scan(ctx, &tracked); err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	all, unknown := migrations.Sorted(), migrate.MigrationSlice(nil)
	if tracked {
		if all, err = m.MigrationsWithStatus(ctx); err != nil {
			return nil, fmt.Errorf("migration status: %w", err)
		}
		if unknown, err = m.MissingMigrations(ctx); err != nil {
			return nil, fmt.Errorf("migration status: %w", err)
		}
	}
	var out []MigrationState
	for _, mg := range all {
		out = append(out, MigrationState{Name: mg.String(), AppliedAt: mg.MigratedAt})
	}
	for _, mg := range unknown {
		out = append(out, MigrationState{Name: mg.Name, AppliedAt: mg.MigratedAt, Unknown: true})
	}
	return out, nil
}

// SchemaFingerprint identifies the set of embedded migrations, so that test
// templates built from an older schema are never reused.
func SchemaFingerprint() string {
	h := sha256.New()
	_ = fs.WalkDir(sqlMigrations, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sqlMigrations.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s:%d:", path, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}
