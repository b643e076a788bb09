//go:build unix

package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultReadyTimeout bounds a start when the caller's context has no
// deadline: a server that never answers must fail the test, not hang it.
const defaultReadyTimeout = time.Minute

// errPortTaken marks a start that lost its port to another process between
// the probe in freePort and the server's own bind; the caller tries another.
var errPortTaken = errors.New("port already in use")

// server is one running server process.
type server struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // Wait's result; read only after done is closed
	logPath string
	logFrom int64 // size of the log at start: this process's lines come after
}

// startServer starts bin as a child in a process group of its own, writing
// stdout and stderr to logPath, as the user in cred when cred is not nil.
func startServer(bin string, args []string, workDir, logPath string, cred *syscall.Credential) (*server, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	st, err := logFile.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat server log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = workDir
	// A file rather than a pipe: with a pipe, Wait would not return until
	// every process holding the write end exits, and orphaned Postgres
	// backends would hold it.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so a kill reaches whatever it forked, and a ^C in
		// the terminal reaches only the test, which then stops it in order.
		Setpgid:    true,
		Credential: cred,
	}
	setParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), logPath: logPath, logFrom: st.Size()}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the server's process group and waits until it is reaped.
func (s *server) kill() {
	if s.exited() {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// waitReady polls ready until it succeeds, the server exits, or ctx ends.
func (s *server) waitReady(ctx context.Context, ready func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultReadyTimeout)
		defer cancel()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Each try gets a short deadline of its own, so one connection
		// stuck in a half-started server cannot use up the whole wait.
		tryCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := ready(tryCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			if strings.Contains(s.logSince(), "Address already in use") {
				return fmt.Errorf("exited before answering: %w", errPortTaken)
			}
			return fmt.Errorf("exited before answering (%v)", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not answering: %w (last try: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// logSince returns what the server wrote to its log since it started, at
// most the last 4 KiB.
func (s *server) logSince() string {
	const maxBytes = 4096
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	from := max(s.logFrom, st.Size()-maxBytes)
	buf := make([]byte, st.Size()-from)
	n, _ := f.ReadAt(buf, from)
	text := string(buf[:n])
	if from > s.logFrom {
		// Started mid-line: drop the fragment.
		if _, rest, ok := strings.Cut(text, "\n"); ok {
			text = rest
		}
	}
	return text
}

// withLog adds the server's last log lines to err: a server that fails to
// start almost always says why there and nowhere else.
func (s *server) withLog(err error) error {
	return fmt.Errorf("%w\nlast lines of %s:\n%s", err, s.logPath, lastLines(s.logSince(), 20))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startOnFreePort calls start with free ports until one is not lost to a
// race with another process, three tries at most.
func startOnFreePort(start func(port int) error) error {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if err = start(port); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

// freePort returns a port on 127.0.0.1 that nothing listens on now. It picks
// one below the kernel's ephemeral range when it can: during a restart the
// port is free for a moment while parkd's clients are reconnecting to it, and
// one of those connections could be handed it as its own source port, leaving
// the new server unable to bind.
func freePort() (int, error) {
	ephemeralLow := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeralLow = n
			}
		}
	}
	const low = 20000 // above most well-known and registered service ports
	if ephemeralLow > low+1000 {
		for range 100 {
			port := low + rand.IntN(ephemeralLow-low)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procID names a process by pid and start time, so a pid the kernel has
// since reused is not mistaken for it.
type procID struct {
	pid   int
	start string
}

// procStat returns a process's parent pid, state and start time from
// /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, start string, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, "", false
	}
	// The command name, field 2, is in parentheses and may hold spaces or
	// parentheses of its own: the fields after the last ')' are plain.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, "", false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 20 {
		return 0, 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil || f[0] == "" {
		return 0, 0, "", false
	}
	return ppid, f[0][0], f[19], true // field 22, starttime
}

// descendants lists the processes below pid. Postgres backends call setsid,
// so they are not in the postmaster's process group and only their parentage
// finds them. Reads /proc, so it finds nothing where there is none.
func descendants(pid int) []procID {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]procID{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, start, ok := procStat(p); ok {
			children[ppid] = append(children[ppid], procID{p, start})
		}
	}
	var out []procID
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

// alive reports whether p still runs. A zombie counts as gone: it holds no
// memory or ports, and in a container whose PID 1 does not reap orphans it
// stays a zombie for good.
func (p procID) alive() bool {
	_, state, start, ok := procStat(p.pid)
	return ok && start == p.start && state != 'Z'
}
