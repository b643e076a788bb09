package repo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parkd/parkd/repo/repotest"
)

// `parkd migrate status`: what is applied, what a newer parkd applied that
// this one does not know, and on a database without bun's table every migration
// pending; asking changes nothing.
func TestMigrationStatus(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	// status is the migrations as name:state, and a list of the embedded
	// migrations' names, each with the state embedded.
	status := func(embedded string) (got, want string) {
		t.Helper()
		states, err := st.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var g, w []string
		for _, m := range states {
			switch {
			case m.Unknown:
				g = append(g, m.Name+":unknown")
				continue
			case m.AppliedAt.IsZero():
				g = append(g, m.Name+":pending")
			default:
				g = append(g, m.Name+":applied")
			}
			w = append(w, m.Name+":"+embedded)
		}
		if len(w) == 0 || w[0] != "20261124000001_init:"+embedded {
			t.Errorf("the embedded migrations, oldest first: %v", states)
		}
		return fmt.Sprint(g), fmt.Sprint(w)
	}
	exec := func(q string) {
		t.Helper()
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := status("applied"); got != want {
		t.Errorf("migrated: %s, want %s", got, want)
	}
	exec("INSERT INTO bun_migrations (name, group_id) VALUES ('29991231000000', 9)")
	if got, want := status("applied"); got != want[:len(want)-1]+" 29991231000000:unknown]" {
		t.Errorf("migrated by a newer parkd: %s, want the embedded applied, then the unknown one", got)
	}
	exec("DROP TABLE bun_migrations")
	if got, want := status("pending"); got != want {
		t.Errorf("never migrated: %s, want %s", got, want)
	}
	var created bool
	if err := st.DB.NewRaw("SELECT to_regclass('bun_migrations') IS NOT NULL").Scan(ctx, &created); err != nil || created {
		t.Errorf("asking for the status created bun's table (%v)", err)
	}
}
