package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is a parkd subcommand run as a process of a Cluster.
type Role string

// Roles a Cluster runs.
const (
	RoleServe     Role = "serve"
	RoleIntake    Role = "intake"
	RoleWorker    Role = "worker"
	RoleScheduler Role = "scheduler"
)

// Cluster runs parkd as child processes, in one of two topologies: everything
// in one `parkd serve`, or split as production runs it (Intakes `parkd
// intake`, Workers `parkd worker`, Schedulers `parkd scheduler`), and lets a driver
// kill and restart any one of them by role and index, which is what a chaos
// test needs besides a load.
//
// Every process gets its own HTTP port on 127.0.0.1 (the intake's API, or
// PARKD_METRICS_ADDR for a worker or scheduler) so that readiness is checked
// per process at /readyz.
type Cluster struct {
	// Parkd is the path of the parkd executable the processes run: the lab
	// drives parkd as a separate binary, never linked into itself.
	Parkd string
	// Env is added to every process's environment: PARKD_DATABASE_URL,
	// PARKD_REDIS_URL, PARKD_JWT_SECRET and the like. Ports are the Cluster's.
	Env []string
	// Split selects the production topology; otherwise one `parkd serve`.
	Split      bool
	Intakes    int // split: intake processes (0 is taken as 1), each an API of its own
	Workers    int // split: worker processes (at least 1)
	Schedulers int // split: scheduler processes (0 is allowed: nothing reconciles then)
	// Log receives every child's stderr, each line prefixed with the process's
	// name; nil discards it (the last lines are still kept for error messages).
	Log io.Writer
	// ReadyTimeout bounds how long a process may take to answer /readyz (60 s
	// when zero).
	ReadyTimeout time.Duration

	mu     sync.Mutex
	procs  []*Proc
	Client string // host:port of the first intake (serve or intake)
	logMu  sync.Mutex
}

// Proc is one parkd process of a Cluster.
type Proc struct {
	Role  Role
	Index int    // 1-based within its role
	Addr  string // host:port of its HTTP port (API or metrics)
	// only: the one process of its role, named without an index
	only bool

	out *lineWriter

	// A restart replaces the incarnation while a sampler may be reading it.
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the incarnation has exited
	err  error         // its exit, once done
	// stopping is set when the Cluster ends the process itself, so that its
	// exit is not reported as a crash.
	stopping bool
}

// Name is the process's role and index, e.g. "worker-2" ("serve", and
// "intake" when there is one, have no index).
func (p *Proc) Name() string {
	if p.Role == RoleServe || p.Role == RoleIntake && p.only {
		return string(p.Role)
	}
	return fmt.Sprintf("%s-%d", p.Role, p.Index)
}

// PID is the process ID of the current incarnation (0 before it started).
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the current incarnation has exited, and how.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Crashed reports whether the current incarnation exited without being told
// to, and how.
func (p *Proc) Crashed() (bool, error) {
	exited, err := p.Exited()
	return exited && !p.isStopping(), err
}

// Dismiss marks a crashed process as dealt with: it is not reported as
// crashed again (unless restarted and crashed anew).
func (p *Proc) Dismiss() { p.setStopping() }

// Tail is the last lines the process wrote.
func (p *Proc) Tail() string { return p.out.Tail() }

// wait blocks until the current incarnation has exited.
func (p *Proc) wait() {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// signal sends sig to the current incarnation.
func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

func (p *Proc) setStopping() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
}

func (p *Proc) isStopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

func (p *Proc) started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

func (c *Cluster) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.Parkd, args...)
	// Later entries win in os/exec, so the Cluster's settings override any
	// PARKD_* variable the caller's shell happens to export.
	cmd.Env = append(os.Environ(), c.Env...)
	return cmd
}

// Run runs a one-shot parkd command (migrate, check) with the Cluster's
// environment and returns its combined output.
func (c *Cluster) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := c.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start parkd %s: %w", strings.Join(args, " "), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			return out.Bytes(), fmt.Errorf("parkd %s: %w", strings.Join(args, " "), err)
		}
		return out.Bytes(), nil
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-waited
		return out.Bytes(), fmt.Errorf("parkd %s: %w", strings.Join(args, " "), ctx.Err())
	}
}

// Start migrates the database, then starts every process of the topology and
// waits until each answers /readyz. On failure it stops what it started.
func (c *Cluster) Start(ctx context.Context) error {
	if out, err := c.Run(ctx, "migrate"); err != nil {
		return fmt.Errorf("cluster: %w\n%s", err, TailLines(string(out), 10))
	}
	plan := []struct {
		role Role
		n    int
	}{{RoleServe, 1}}
	if c.Split {
		plan = []struct {
			role Role
			n    int
		}{{RoleWorker, max(c.Workers, 1)}, {RoleScheduler, c.Schedulers}, {RoleIntake, max(c.Intakes, 1)}}
	}
	c.mu.Lock()
	for _, step := range plan {
		for i := 1; i <= step.n; i++ {
			addr, err := freeAddr()
			if err != nil {
				c.mu.Unlock()
				return err
			}
			p := &Proc{Role: step.role, Index: i, Addr: addr, only: step.n == 1}
			if (step.role == RoleServe || step.role == RoleIntake) && i == 1 {
				c.Client = addr
			}
			c.procs = append(c.procs, p)
		}
	}
	procs := append([]*Proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		if err := c.launch(p); err != nil {
			_ = c.Stop(10 * time.Second)
			return err
		}
	}
	for _, p := range procs {
		if err := c.waitReady(ctx, p); err != nil {
			_ = c.Stop(10 * time.Second)
			return err
		}
	}
	return nil
}

// launch starts (or starts again) p's process.
func (c *Cluster) launch(p *Proc) error {
	cmd := c.command(string(p.Role))
	if p.Role == RoleServe || p.Role == RoleIntake {
		cmd.Env = append(cmd.Env, "PARKD_HTTP_ADDR="+p.Addr)
	} else {
		cmd.Env = append(cmd.Env, "PARKD_METRICS_ADDR="+p.Addr)
	}
	if p.out == nil {
		p.out = &lineWriter{prefix: "[" + p.Name() + "] ", dst: c.Log, mu: &c.logMu}
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cluster: start %s: %w", p.Name(), err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err, p.stopping = cmd, done, nil, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// waitReady polls p's /readyz until it answers 200, p exits, or the timeout.
func (c *Cluster) waitReady(ctx context.Context, p *Proc) error {
	limit := c.ReadyTimeout
	if limit == 0 {
		limit = 60 * time.Second
	}
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		res, err := hc.Get("http://" + p.Addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("cluster: %s exited while starting (%v); its last lines:\n%s", p.Name(), err, p.out.Tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s not ready at http://%s/readyz within %s; its last lines:\n%s", p.Name(), p.Addr, limit, p.out.Tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for %s: %w", p.Name(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CheckResult is `parkd check` run on the Cluster's database.
type CheckResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
}

// Check runs `parkd check --grace grace` against the Cluster's database.
func (c *Cluster) Check(ctx context.Context, grace time.Duration) CheckResult {
	out, err := c.Run(ctx, "check", "--grace", grace.String())
	r := CheckResult{OK: err == nil, Output: strings.TrimSpace(string(out))}
	if err != nil && r.Output == "" {
		r.Output = err.Error()
	}
	return r
}

// Describe names each process with its PID.
func (c *Cluster) Describe() string {
	var parts []string
	for _, p := range c.Procs() {
		parts = append(parts, fmt.Sprintf("%s (pid %d)", p.Name(), p.PID()))
	}
	return strings.Join(parts, ", ")
}

// URL is the base URL of the HTTP API of the first intake.
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "http://" + c.Client
}

// URLs are the base URLs of every intake's HTTP API (serve's, or each
// intake's), for a load spread over them as a load balancer would.
func (c *Cluster) URLs() []string {
	var out []string
	for _, p := range c.Procs() {
		if p.Role == RoleServe || p.Role == RoleIntake {
			out = append(out, "http://"+p.Addr)
		}
	}
	return out
}

// Procs returns the processes of the Cluster.
func (c *Cluster) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.procs...)
}

// PIDs lists the running processes by name, for memory sampling.
func (c *Cluster) PIDs() []ProcRef {
	var out []ProcRef
	for _, p := range c.Procs() {
		if exited, _ := p.Exited(); !exited && p.started() {
			out = append(out, ProcRef{Name: p.Name(), PID: p.PID()})
		}
	}
	return out
}

// Find is process i (1-based) of role.
func (c *Cluster) Find(role Role, i int) (*Proc, error) {
	for _, p := range c.Procs() {
		if p.Role == role && p.Index == i {
			return p, nil
		}
	}
	return nil, fmt.Errorf("cluster: no %s %d", role, i)
}

// Kill SIGKILLs process i (1-based) of role and waits until it is gone: the
// crash a chaos test wants, with no chance to finish its tasks.
func (c *Cluster) Kill(role Role, i int) error {
	p, err := c.Find(role, i)
	if err != nil {
		return err
	}
	p.setStopping()
	p.signal(syscall.SIGKILL)
	p.wait()
	return nil
}

// Restart starts process i of role again on the same port, stopping it first
// (SIGTERM, SIGKILL after 20 s) if it still runs, and waits until it is ready.
func (c *Cluster) Restart(ctx context.Context, role Role, i int) error {
	p, err := c.Find(role, i)
	if err != nil {
		return err
	}
	if exited, _ := p.Exited(); !exited {
		c.terminate(p, 20*time.Second)
	}
	if err := c.launch(p); err != nil {
		return err
	}
	return c.waitReady(ctx, p)
}

// terminate sends SIGTERM and waits up to grace, then SIGKILLs. It reports
// whether the process exited by itself.
func (c *Cluster) terminate(p *Proc, grace time.Duration) bool {
	p.setStopping()
	if exited, _ := p.Exited(); exited {
		return true
	}
	p.signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { p.wait(); close(exited) }()
	select {
	case <-exited:
		return true
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-exited
		return false
	}
}

// Stop ends every process gracefully in the order that loses nothing: the
// intake first (no new requests), then the schedulers, then the workers (which
// finish their running tasks). A process that does not exit within grace is
// SIGKILLed. The error names each process that exited badly, or crashed
// earlier without having been killed.
func (c *Cluster) Stop(grace time.Duration) error {
	order := []Role{RoleServe, RoleIntake, RoleScheduler, RoleWorker}
	var errs []error
	for _, role := range order {
		for _, p := range c.Procs() {
			if p.Role != role || !p.started() {
				continue
			}
			crashed := !p.isStopping()
			if exited, err := p.Exited(); exited {
				if crashed {
					errs = append(errs, fmt.Errorf("%s had exited by itself (%v)", p.Name(), err))
				}
				continue
			}
			if !c.terminate(p, grace) {
				errs = append(errs, fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name(), grace))
				continue
			}
			if _, err := p.Exited(); err != nil {
				errs = append(errs, fmt.Errorf("%s exited with %v after SIGTERM", p.Name(), err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster stop: %w", errors.Join(errs...))
	}
	return nil
}

// Crashed lists the processes that exited without being told to.
func (c *Cluster) Crashed() []string {
	var out []string
	for _, p := range c.Procs() {
		if crashed, err := p.Crashed(); crashed {
			out = append(out, fmt.Sprintf("%s (%v)", p.Name(), err))
		}
	}
	return out
}

// LogCounts are the warnings and errors each process logged.
func (c *Cluster) LogCounts() map[string]LogCount {
	out := map[string]LogCount{}
	for _, p := range c.Procs() {
		if p.out != nil {
			out[p.Name()] = p.out.Counts()
		}
	}
	return out
}

// freeAddr picks a free port on 127.0.0.1. Another process may take it before
// the child binds it; the child then exits ("address in use") and Start says so.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ProcRef names a process, e.g. one whose memory is sampled.
type ProcRef struct {
	Name string // e.g. "serve", "worker-2"
	PID  int
}

// LogCount is how many warning and error lines a process logged.
type LogCount struct {
	Warn   int      `json:"warn"`
	Error  int      `json:"error"`
	Sample []string `json:"sample,omitempty"` // the first few of them
}

// SummarizeLogs is each process's error and warning counts, in name order.
func SummarizeLogs(logs map[string]LogCount) string {
	names := slices.Sorted(maps.Keys(logs))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d errors, %d warnings", n, logs[n].Error, logs[n].Warn)
	}
	return strings.Join(parts, "; ")
}

// lineWriter splits a child's output into lines, forwards them prefixed, counts
// warnings and errors (slog's text and JSON forms) and keeps the last lines for
// error messages.
type lineWriter struct {
	prefix string
	dst    io.Writer
	mu     *sync.Mutex // shared by every child writing to dst

	own     sync.Mutex
	partial []byte
	tail    []string
	counts  LogCount
}

const tailKeep = 20

func (w *lineWriter) Write(b []byte) (int, error) {
	w.own.Lock()
	defer w.own.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(b), nil
}

func (w *lineWriter) line(s string) {
	w.tail = append(w.tail, s)
	if len(w.tail) > tailKeep {
		w.tail = w.tail[len(w.tail)-tailKeep:]
	}
	level := ""
	switch {
	case strings.Contains(s, "level=ERROR"), strings.Contains(s, `"level":"ERROR"`):
		level = "error"
		w.counts.Error++
	case strings.Contains(s, "level=WARN"), strings.Contains(s, `"level":"WARN"`):
		level = "warn"
		w.counts.Warn++
	}
	if level != "" && len(w.counts.Sample) < 5 {
		w.counts.Sample = append(w.counts.Sample, s)
	}
	if w.dst != nil {
		w.mu.Lock()
		fmt.Fprintf(w.dst, "%s%s\n", w.prefix, s)
		w.mu.Unlock()
	}
}

// Tail is the last lines written.
func (w *lineWriter) Tail() string {
	w.own.Lock()
	defer w.own.Unlock()
	return strings.Join(w.tail, "\n")
}

// Counts is how many warnings and errors were written.
func (w *lineWriter) Counts() LogCount {
	w.own.Lock()
	defer w.own.Unlock()
	c := w.counts
	c.Sample = append([]string(nil), c.Sample...)
	return c
}

// TailLines is the last n lines of a process's output s, for error messages.
func TailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
