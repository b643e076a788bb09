package repo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parkd/parkd/repo"
)

// What Postgres refuses for good is a Refusal; what may pass (a lost
// connection, a serialization failure, a deadlock, a shutdown, a cancelled
// statement, a lock not available) is not, and is retried.
func TestRefusalIsWhatNoRetryCures(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"23514": true,                  // check_violation: a plate the schema's pattern refuses
		"23502": true,                  // not_null_violation
		"23503": true,                  // foreign_key_violation
		"23505": true,                  // unique_violation (Conflict: tried a few times first)
		"23P01": true,                  // exclusion_violation (idem)
		"22001": true,                  // string_data_right_truncation
		"22003": true,                  // numeric_value_out_of_range
		"22008": true,                  // datetime_field_overflow
		"22P02": true,                  // invalid_text_representation
		"42703": true,                  // undefined_column: parkd's own fault, the same every time
		"42501": true,                  // insufficient_privilege
		"54000": true,                  // program_limit_exceeded
		"40001": false, "40P01": false, // serialization failure, deadlock
		"08006": false, "08003": false, // connection failure, connection does not exist
		"57P01": false, "57014": false, // admin shutdown, query canceled
		"55P03": false, "53300": false, // lock not available, too many connections
		"XX000": false,
	} {
		err := fmt.Errorf("apply: %w", &pgconn.PgError{Code: code, TableName: "sessions", Message: "m", Detail: "Failing row contains (AB12CD)"})
		r, got := repo.AsRefusal(err)
		if got != want {
			t.Errorf("SQLSTATE %s: refusal = %v, want %v", code, got, want)
			continue
		}
		if !got {
			continue
		}
		if conflict := code == "23505" || code == "23P01"; r.Conflict() != conflict {
			t.Errorf("SQLSTATE %s: Conflict() = %v", code, r.Conflict())
		}
		msg := r.Message()
		if !strings.Contains(msg, "SQLSTATE "+code) || !strings.Contains(msg, "of a session") ||
			strings.Contains(msg, "AB12CD") || strings.Contains(msg, "sessions") {
			t.Errorf("SQLSTATE %s: message %q: want the code and the kind of record, no value and no table name", code, msg)
		}
	}
	if _, ok := repo.AsRefusal(context.DeadlineExceeded); ok {
		t.Error("a timeout is a refusal")
	}
}
