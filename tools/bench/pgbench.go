package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/parkd/parkd/tools/cluster"
)

// PgbenchResult is the machine's TPC-B rate, the yardstick for pairs/s: a
// start+stop pair is two short write transactions, like one TPC-B transaction
// is five statements.
type PgbenchResult struct {
	Skipped string  `json:"skipped,omitempty"` // why it did not run
	TPS     float64 `json:"tps"`               // excluding connection setup
	Clients int     `json:"clients"`
	Threads int     `json:"threads"`
	Seconds int     `json:"seconds"`
	Scale   int     `json:"scale"`
	InitSec float64 `json:"init_seconds"`
}

// parsePgbenchTPS reads the tps figure that excludes connection setup from
// pgbench's report: "tps = 953.1 (without initial connection time)" since
// PostgreSQL 14, "(excluding connections establishing)" before.
func parsePgbenchTPS(out string) (float64, error) {
	var fallback string
	for line := range strings.SplitSeq(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "tps = ")
		if !ok {
			continue
		}
		num, note, _ := strings.Cut(rest, " ")
		switch {
		case strings.Contains(note, "without initial connection time"), strings.Contains(note, "excluding connections"):
			return parseTPS(num)
		case strings.Contains(note, "including connections"):
			// Only a fallback: it counts the connection setup too.
			if fallback == "" {
				fallback = num
			}
		default:
			fallback = num
		}
	}
	if fallback != "" {
		return parseTPS(fallback)
	}
	return 0, errors.New("pgbench printed no \"tps = \" line")
}

func parseTPS(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("pgbench tps %q: %w", s, err)
	}
	return v, nil
}

// runPgbench initialises db (a fresh database) at scale and runs the built-in
// TPC-B-like script for seconds with clients, without vacuum (-n): the tables
// are fresh.
func runPgbench(ctx context.Context, dsn string, scale, clients, seconds int) (PgbenchResult, error) {
	threads := min(2, clients)
	res := PgbenchResult{Clients: clients, Threads: threads, Seconds: seconds, Scale: scale}
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		res.Skipped = "pgbench is not installed (apt-get install postgresql-client)"
		return res, nil
	}
	t0 := time.Now()
	// libpq takes a connection URI where pgbench expects a database name.
	if out, err := exec.CommandContext(ctx, bin, "-i", "-s", strconv.Itoa(scale), "-q", dsn).CombinedOutput(); err != nil {
		return res, fmt.Errorf("pgbench -i: %w: %s", err, cluster.TailLines(string(out), 5))
	}
	res.InitSec = time.Since(t0).Seconds()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
		"-T", strconv.Itoa(seconds), "-n", dsn)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("pgbench: %w: %s", err, cluster.TailLines(stderr.String(), 5))
	}
	if res.TPS, err = parsePgbenchTPS(stdout.String()); err != nil {
		return res, err
	}
	return res, nil
}
