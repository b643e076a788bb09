//go:build unix

package faults

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// stopTimeout bounds Stop's fast shutdown, which ends with a checkpoint that
// fsyncs up to shared_buffers of dirty pages; past it Stop kills the server.
const stopTimeout = time.Minute

// Postgres is a private PostgreSQL cluster whose data survives Restart.
type Postgres struct {
	bindir  string
	home    string              // owned by the server's user: data directory and socket
	tmpHome bool                // home is under os.TempDir(), and Stop removes it
	dataDir string              // PGDATA, inside home
	sockDir string              // "" when a socket in home would exceed the path limit
	logPath string              // in the caller's dir, written through an inherited descriptor
	cred    *syscall.Credential // the postgres user when we are root, else nil
	port    int

	mu      sync.Mutex // serialises Restart, Kill and Stop
	srv     *server    // nil while no postmaster runs
	stopped bool
}

// PostgresAvailable returns nil when the PostgreSQL server binaries are found
// and can run here, and otherwise an error saying what is missing, for a test
// to skip with.
func PostgresAvailable() error {
	bindir, err := pgBindir()
	if err != nil {
		return err
	}
	if _, err := serverUser(); err != nil {
		return err
	}
	if out, err := exec.Command(filepath.Join(bindir, "postgres"), "--version").CombinedOutput(); err != nil {
		return fmt.Errorf("faults: %s/postgres --version: %w: %s", bindir, err, out)
	}
	return nil
}

// StartPostgres creates a cluster with initdb (superuser postgres, trust
// authentication, UTF8, C locale) and starts it on a free port of 127.0.0.1,
// returning once it accepts connections. When ctx has no deadline the wait is
// bounded at a minute. Callers must defer Stop.
//
// The server log is dir/postgres.log; the cluster is dir/pg. Postgres will
// not run as root, so under root the server runs as the postgres user, and
// if that user cannot reach dir (t.TempDir() sits in a directory only root
// may enter) the cluster goes in a directory of its own under os.TempDir()
// instead, which Stop removes.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	bindir, err := pgBindir()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("faults: postgres dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("faults: postgres dir: %w", err)
	}
	p := &Postgres{bindir: bindir, cred: cred, logPath: filepath.Join(dir, "postgres.log")}
	if err := p.makeHome(dir); err != nil {
		return nil, err
	}
	if err := p.initdb(ctx); err != nil {
		p.removeHome()
		return nil, err
	}
	err = startOnFreePort(func(port int) error {
		p.port = port
		return p.start(ctx)
	})
	if err != nil {
		p.removeHome()
		return nil, err
	}
	return p, nil
}

// Addr returns the server's host:port.
func (p *Postgres) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// URL returns a connection URL for database db as the superuser postgres.
func (p *Postgres) URL(db string) string {
	return "postgres://postgres@" + p.Addr() + "/" + db + "?sslmode=disable"
}

// Restart shuts the server down in fast mode (sessions end, open
// transactions roll back, committed data stays) and starts it again on the
// same port, returning once it accepts connections. After Kill it only
// starts the server, which then runs crash recovery. If the shutdown
// outlasts ctx the server is killed and Restart fails.
func (p *Postgres) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("faults: postgres restart after Stop")
	}
	if err := p.shutdown(ctx); err != nil {
		return err
	}
	return p.start(ctx)
}

// Kill SIGKILLs the postmaster and every backend at once, as a crash of the
// machine would, and waits until they are gone. Only what was committed
// survives, and the next Restart runs crash recovery.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crash()
}

// Stop shuts the server down in fast mode and waits for it, killing it if
// that takes over a minute, then removes a cluster it made under
// os.TempDir(). It is safe to call more than once.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := p.shutdown(ctx)
	if rmErr := p.removeHome(); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

// makeHome creates the directory holding the cluster, owned by the user the
// server runs as.
func (p *Postgres) makeHome(dir string) error {
	p.home = filepath.Join(dir, "pg")
	if p.cred != nil && !canEnter(dir, p.cred) {
		home, err := os.MkdirTemp("", "parkd-faults-pg-")
		if err != nil {
			return fmt.Errorf("faults: postgres home: %w", err)
		}
		p.home, p.tmpHome = home, true
	} else if err := os.Mkdir(p.home, 0o700); err != nil {
		return fmt.Errorf("faults: postgres home: %w", err)
	}
	if p.cred != nil {
		if err := os.Chown(p.home, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			p.removeHome()
			return fmt.Errorf("faults: postgres home: %w", err)
		}
	}
	p.dataDir = filepath.Join(p.home, "data")
	// The socket's path must fit in sockaddr_un (107 bytes on Linux, less
	// elsewhere), and test directories can be long. Clients here use TCP;
	// the socket is only there for a person with psql -h.
	if len(p.home+"/.s.PGSQL.65535.lock") <= 100 {
		p.sockDir = p.home
	}
	return nil
}

func (p *Postgres) removeHome() error {
	if !p.tmpHome {
		return nil
	}
	if err := os.RemoveAll(p.home); err != nil {
		return fmt.Errorf("faults: remove postgres home: %w", err)
	}
	return nil
}

func (p *Postgres) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bindir, "initdb"),
		"-D", p.dataDir,
		"-U", "postgres",
		"--auth=trust",
		"-E", "UTF8",
		"--no-locale", // the same collation whatever LANG the host has
		"--no-sync",   // a crash during a test's initdb costs nothing
	)
	cmd.Dir = p.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("faults: initdb %s: %w\n%s", p.dataDir, err, lastLines(string(out), 20))
	}
	return nil
}

// start runs a postmaster on p.port; it is called with p.mu held, or before
// p is shared.
func (p *Postgres) start(ctx context.Context) error {
	args := []string{
		"-D", p.dataDir,
		"-p", strconv.Itoa(p.port),
		"-k", p.sockDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=on", // commits pay for durability, as in production
		"-c", "synchronous_commit=on",
		"-c", "shared_buffers=128MB",
		"-c", "max_connections=200",
		"-c", "logging_collector=off", // keep logging to stderr, our log file
	}
	srv, err := startServer(filepath.Join(p.bindir, "postgres"), args, p.home, p.logPath, p.cred)
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	if err := srv.waitReady(ctx, p.ping); err != nil {
		p.srv = srv
		_ = p.crash()
		return srv.withLog(fmt.Errorf("faults: postgres on %s: %w", p.Addr(), err))
	}
	p.srv = srv
	return nil
}

func (p *Postgres) ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// shutdown asks for a fast shutdown and waits until the postmaster exits,
// which it does only after all its backends have; if ctx ends first, it
// kills them all.
func (p *Postgres) shutdown(ctx context.Context) error {
	if p.srv == nil {
		return nil
	}
	srv := p.srv
	if err := srv.cmd.Process.Signal(syscall.SIGINT); err != nil && !srv.exited() {
		return fmt.Errorf("faults: postgres fast shutdown: %w", err)
	}
	select {
	case <-srv.done:
		p.srv = nil
		return nil
	case <-ctx.Done():
		err := errors.Join(fmt.Errorf("faults: postgres fast shutdown: %w; killed it", ctx.Err()), p.crash())
		return srv.withLog(err)
	}
}

// crash SIGKILLs the postmaster and all its descendants and waits until they
// are gone: a new postmaster will not start while an old backend still
// attaches the old shared memory.
func (p *Postgres) crash() error {
	if p.srv == nil {
		return nil
	}
	srv := p.srv
	p.srv = nil
	if srv.exited() {
		return nil
	}
	// Stopped, the postmaster can neither fork a backend we would miss nor
	// reap one that exits meanwhile, so no pid below it is reused before
	// the kills land.
	_ = srv.cmd.Process.Signal(syscall.SIGSTOP)
	procs := descendants(srv.cmd.Process.Pid)
	for _, c := range procs {
		_ = syscall.Kill(c.pid, syscall.SIGKILL)
	}
	srv.kill()
	// The orphans are reaped by init, not by us: watch them go.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range procs {
		for c.alive() {
			if time.Now().After(deadline) {
				return fmt.Errorf("faults: postgres process %d still alive 10s after SIGKILL", c.pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// pgBindir finds the directory holding initdb and postgres: $PARKD_PG_BINDIR,
// else pg_config --bindir, else the newest /usr/lib/postgresql/*/bin (the
// Debian layout), else the directory of postgres on PATH.
func pgBindir() (string, error) {
	if d := os.Getenv("PARKD_PG_BINDIR"); d != "" {
		if err := hasServerBinaries(d); err != nil {
			return "", fmt.Errorf("faults: PARKD_PG_BINDIR: %w", err)
		}
		return d, nil
	}
	// pg_config comes with libpq's development files, whose version can
	// differ from the server's, so its answer counts only if the server
	// binaries are there.
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); hasServerBinaries(d) == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, d := range dirs {
		if hasServerBinaries(d) == nil {
			return d, nil
		}
	}
	if bin, err := exec.LookPath("postgres"); err == nil {
		if d := filepath.Dir(bin); hasServerBinaries(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("faults: no PostgreSQL server binaries (initdb, postgres) found: " +
		"set PARKD_PG_BINDIR, or install the server (pg_config --bindir, /usr/lib/postgresql/*/bin and PATH were tried)")
}

func hasServerBinaries(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", filepath.Join(dir, name))
		}
	}
	return nil
}

// serverUser returns who the server runs as: nil (ourselves) unless we are
// root, whom initdb and postgres refuse, and then the postgres user.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("faults: running as root, and postgres refuses root: need a postgres user to run it as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("faults: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("faults: postgres gid %q: %w", u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(g))
		}
	}
	return cred, nil
}

// canEnter reports whether the user in cred may search dir and every
// directory above it, judging by mode bits alone.
func canEnter(dir string, cred *syscall.Credential) bool {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err != nil {
			return false
		}
		var bit uint32 = 0o001
		switch {
		case st.Uid == cred.Uid:
			bit = 0o100
		case st.Gid == cred.Gid || slices.Contains(cred.Groups, st.Gid):
			bit = 0o010
		}
		if uint32(st.Mode)&bit == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
