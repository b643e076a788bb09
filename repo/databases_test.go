package repo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// The lab's databases: made empty again, dropped, and a name that is not a
// plain identifier refused.
func TestRecreateAndDropDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := repo.Open(repotest.AdminURL(), repo.PoolConfig{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("parkd_labtest_%d", time.Now().UnixNano())
	exists := func() bool {
		var n int
		if err := admin.DB.NewRaw("SELECT count(*) FROM pg_database WHERE datname = ?", name).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for range 2 { // the second drops the first's
		if err := repo.RecreateDatabase(ctx, admin.DB, name); err != nil || !exists() {
			t.Fatalf("recreate: %v, exists %t", err, exists())
		}
	}
	if err := repo.DropDatabase(ctx, admin.DB, name); err != nil || exists() {
		t.Fatalf("drop: %v, exists %t", err, exists())
	}
	if err := repo.DropDatabase(ctx, admin.DB, name); err != nil {
		t.Fatalf("dropping what is gone: %v", err)
	}
	for _, bad := range []string{"", "Parkd", "x; DROP DATABASE postgres", `a"b`} {
		if err := repo.RecreateDatabase(ctx, admin.DB, bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}
