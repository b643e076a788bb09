package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

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
		{"registrar", "-h"}, {"registrar", "--addr", "127.0.0.1:1", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runLab(args...)
			if code != 0 || !strings.Contains(stdout, "usage: parkdlab") || stderr != "" {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if len(args) > 1 && args[0] != "registrar" && !strings.Contains(stdout, "-parkd") {
				t.Errorf("%s -h does not list --parkd:\n%s", args[0], stdout)
			}
		})
	}
}

func TestMisuseExits2(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"bench", "--nope"}, {"chaos", "--nope"}, {"bench", "stray"}, {"chaos", "--workers", "x"},
		{"registrar", "--fail", "lots"}, {"registrar", "stray"},
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
		err.Error() != `unknown fault "kill-redis" (faults: kill-worker,redis-flushed,postgres-restart,postgres-kill,redis-failover)` {
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

// lockedBuffer is a strings.Builder written by one goroutine and read by another.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// parkdlab registrar serves the register emulator at --addr until it is
// stopped, asks for --token, and then says what it held.
func TestRegistrarCommandServesUntilStopped(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"registrar", "--addr", "127.0.0.1:0", "--token", "lab-token", "--latency", "1ms"}, &stdout, &stderr)
	}()
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if _, rest, ok := strings.Cut(stdout.String(), "register emulator on "); ok {
			base, _, _ = strings.Cut(rest, " ")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner: %q %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	body := `{"right_id":"parkd-1","version":1,"issuer":"parkd","area_manager_id":"363","area_id":"OOST","usage_id":"BEZOEKP",
		"plate":"AB12CD","country":"NL","start_at":"2026-11-30T13:00:00Z","end_at":"2026-11-30T15:00:00Z","status":"active"}`
	for token, want := range map[string]int{"": 401, "lab-token": 201} {
		req, _ := http.NewRequest(http.MethodPut, base+"/rights/parkd-1", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("PUT with token %q: %d, want %d", token, res.StatusCode, want)
		}
	}
	res, err := http.Get(base + "/enforcement?plate=AB-12-CD&area=OOST&at=2026-11-30T14:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Valid bool }
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || !e.Valid {
		t.Fatalf("enforcement: %+v %v", e, err)
	}
	res.Body.Close()
	stop()
	select {
	case code := <-exit:
		if code != 0 || !strings.Contains(stdout.String(), "1 rights held; 2 PUTs: 1 created") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still serving 10 s after it was stopped")
	}
}
