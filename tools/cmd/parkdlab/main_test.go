package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parkd/parkd/tools/bench"
	"github.com/parkd/parkd/tools/chaos"
	"github.com/parkd/parkd/tools/internal/parkdtest"
)

func TestMain(m *testing.M) { parkdtest.Main(m) }

func runLab(args ...string) (code int, stdout, stderr string) {
	var out, errb strings.Builder
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// -h answers on stdout with exit 0 before anything runs: were bench or chaos
// to start, the parkd named here (which does not exist) or the unreachable
// target would fail them with exit 1.
func TestHelpPrintsUsageAndStartsNothing(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"},
		{"bench", "-h"}, {"bench", "--parkd", "/nonexistent/parkd", "-h"}, {"bench", "--target", "http://127.0.0.1:1", "--help"},
		{"chaos", "-h"}, {"chaos", "--parkd", "/nonexistent/parkd", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runLab(args...)
			if code != 0 || !strings.Contains(stdout, "usage: parkdlab") || stderr != "" {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if len(args) > 1 && !strings.Contains(stdout, "-parkd") {
				t.Errorf("%s -h does not list --parkd:\n%s", args[0], stdout)
			}
		})
	}
}

func TestMisuseExits2(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"bench", "--nope"}, {"chaos", "--nope"}, {"bench", "stray"}, {"chaos", "--workers", "x"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runLab(args...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, "usage: parkdlab") {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

// Without --parkd, the lab runs the parkd next to it; when there is none it
// says where it looked, and starts nothing.
func TestMissingParkdIsNamed(t *testing.T) {
	for _, args := range [][]string{{"chaos"}, {"bench"}, {"chaos", "--parkd", "/nonexistent/parkd"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := runLab(args...)
			if code != 1 || !strings.Contains(stderr, "no parkd executable at") {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
		})
	}
}

// The lab mints tokens for a --target parkd with parkd's development secret
// when none is given: a token parkd signs without PARKD_JWT_SECRET must
// verify with the lab's copy of that secret.
func TestDevSecretIsParkds(t *testing.T) {
	cmd := exec.Command(parkdtest.Binary(t), "token", "--role", "operator", "--sub", "lab", "--ttl", "1m")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("parkd token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte(devJWTSecret), nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatalf("parkd's token does not verify with the lab's development secret: %v", err)
	}
}

func TestParseList(t *testing.T) {
	fs, err := parseList("kill-worker, postgres-kill,", chaos.AllFaults, "fault")
	if err != nil || len(fs) != 2 || fs[0] != chaos.FaultKillWorker || fs[1] != chaos.FaultPostgresKill {
		t.Fatalf("faults = %v, %v", fs, err)
	}
	if _, err := parseList("kill-redis", chaos.AllFaults, "fault"); err == nil ||
		err.Error() != `unknown fault "kill-redis" (faults: kill-worker,redis-flushed,postgres-restart,postgres-kill)` {
		t.Errorf("an unknown fault: %v; want an error listing the faults", err)
	}
	ps, err := parseList(joinList(bench.AllPhases), bench.AllPhases, "phase")
	if err != nil || len(ps) != len(bench.AllPhases) || ps[0] != bench.PhaseIdle {
		t.Fatalf("every phase = %v, %v", ps, err)
	}
	if _, err := parseList("idle,warp", bench.AllPhases, "phase"); err == nil || !strings.Contains(err.Error(), `unknown phase "warp" (phases: idle,max,`) {
		t.Errorf("an unknown phase: %v", err)
	}
}
