package chaos

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// deadlockLog is what the private Postgres's log says of deadlocks: how many
// it broke, the statements it broke them on, and the first report in full.
type deadlockLog struct {
	n      int
	byStmt map[string]int // the victim's statement, clipped
	first  string         // the first deadlock's ERROR, DETAIL and STATEMENT lines
}

// readDeadlocks reads a Postgres server log (the stderr format the faults
// package writes) for "deadlock detected" errors.
func readDeadlocks(path string) deadlockLog {
	d := deadlockLog{byStmt: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return d
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	in, collecting := false, false
	var first []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "ERROR:  deadlock detected"):
			d.n++
			in = true
			collecting = d.n == 1
		case in && strings.Contains(line, "STATEMENT:  "):
			stmt := strings.TrimSpace(line[strings.Index(line, "STATEMENT:  ")+len("STATEMENT:  "):])
			d.byStmt[clip(digitsRE.ReplaceAllString(stmt, "N"), 200)]++
			in = false
		case in && !strings.HasPrefix(line, "\t") && !strings.Contains(line, "DETAIL:") &&
			!strings.Contains(line, "HINT:") && !strings.Contains(line, "CONTEXT:"):
			in = false // another message began before the statement
		}
		if collecting {
			first = append(first, line)
			if !in {
				collecting = false
			}
		}
	}
	d.first = strings.Join(first, "\n")
	return d
}

// finding says it in a paragraph.
func (d deadlockLog) finding() string {
	stmts := slices.Collect(maps.Keys(d.byStmt))
	slices.SortFunc(stmts, func(a, b string) int { return d.byStmt[b] - d.byStmt[a] })
	var parts []string
	for _, s := range stmts {
		parts = append(parts, fmt.Sprintf("%d× %s", d.byStmt[s], s))
	}
	return fmt.Sprintf("Postgres broke %d deadlocks (postgres.log; each one held its transactions for deadlock_timeout, 1 s) on: %s. The first in full:\n%s",
		d.n, strings.Join(parts, "; "), indent(d.first, "      "))
}
