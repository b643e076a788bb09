package repo

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"

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

	files, err := fs.Sub(sqlMigrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(files); err != nil {
		return nil, fmt.Errorf("migrate: discover: %w", err)
	}
	m := migrate.NewMigrator(s.DB, migrations, migrate.WithMarkAppliedOnSuccess(true))
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
