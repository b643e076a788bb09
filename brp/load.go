package brp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/parkd/parkd/repo"
)

// DefaultBatch is how many rows of an extract are loaded per transaction: one
// statement each, a few milliseconds, so a big extract never holds a long
// transaction, and a load that is interrupted is simply run again (loading is
// idempotent).
const DefaultBatch = 5000

// Report is what a load did.
type Report struct {
	Rows     int // data rows read (the header not counted)
	New      int // registrations recorded by this load
	Existing int // registrations recorded before: accepted, nothing changed
	Rejected []Rejection
}

// Rejection is a row that was not loaded.
type Rejection struct {
	Line   int
	Reason string // one of the Reject constants
	Detail string
}

// Accepted is how many rows are now recorded registrations.
func (r Report) Accepted() int { return r.New + r.Existing }

// Write prints every rejected row by line, then the counts, for an operator.
func (r Report) Write(w io.Writer, name string) error {
	bw := bufio.NewWriter(w)
	for _, x := range r.Rejected {
		fmt.Fprintf(bw, "line %d: rejected: %s: %s\n", x.Line, x.Reason, x.Detail)
	}
	fmt.Fprintf(bw, "%s: %d rows, %d accepted (%d new, %d already registered), %d rejected\n",
		name, r.Rows, r.Accepted(), r.New, r.Existing, len(r.Rejected))
	return bw.Flush()
}

// Load records the extract's registrations, batch rows per transaction
// (DefaultBatch when batch is not positive). Every row is either loaded or
// rejected with its line and reason; the extract adds registrations, it removes
// none. When Postgres fails midway, the batches before stay loaded: run it again.
func Load(ctx context.Context, store *repo.Store, x *Extract, batch int) (Report, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	var rep Report
	var pending []repo.Registration
	var lines []int
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := store.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
			out, err := repo.LoadRegistrations(ctx, tx, pending)
			if err != nil {
				return err
			}
			for i, o := range out {
				switch o {
				case repo.RegistrationNew:
					rep.New++
				case repo.RegistrationExisting:
					rep.Existing++
				case repo.RegistrationUnknownAddress:
					rep.Rejected = append(rep.Rejected, Rejection{Line: lines[i], Reason: RejectUnknownAddress,
						Detail: fmt.Sprintf("address %q is not in the register", pending[i].AddressID)})
				}
			}
			return nil
		})
		pending, lines = pending[:0], lines[:0]
		return err
	}
	for row := range x.rows() {
		rep.Rows++
		if row.Reason != "" {
			rep.Rejected = append(rep.Rejected, Rejection{Line: row.Line, Reason: row.Reason, Detail: row.Detail})
			continue
		}
		pending = append(pending, row.Registration)
		lines = append(lines, row.Line)
		if len(pending) >= batch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	slices.SortStableFunc(rep.Rejected, func(a, b Rejection) int { return a.Line - b.Line })
	return rep, nil
}
