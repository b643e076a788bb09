//go:build unix

package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server with nothing persisted: every start,
// including RestartFlushed, begins empty.
type Redis struct {
	bin  string
	dir  string
	port int

	mu      sync.Mutex // serialises restarts and Stop
	srv     *server    // nil while no server runs
	stopped bool
}

// RedisAvailable returns nil when redis-server is on PATH and runs here, and
// otherwise an error saying what is missing, for a test to skip with.
func RedisAvailable() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("faults: redis-server is not on PATH: %w", err)
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil {
		return fmt.Errorf("faults: %s --version: %w: %s", bin, err, out)
	}
	return nil
}

// StartRedis starts redis-server on a free port of 127.0.0.1, with dir as its
// working directory and log, and returns once it answers PING. When ctx has
// no deadline the wait is bounded at a minute. Callers must defer Stop.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("faults: redis-server is not on PATH: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("faults: redis dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("faults: redis dir: %w", err)
	}
	r := &Redis{bin: bin, dir: dir}
	err = startOnFreePort(func(port int) error {
		r.port = port
		return r.start(ctx)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Addr returns the server's host:port.
func (r *Redis) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// URL returns a redis:// URL for database 0, the form PARKD_REDIS_URL takes.
func (r *Redis) URL() string {
	return "redis://" + r.Addr() + "/0"
}

// RestartFlushed kills the server and starts an empty one on the same port,
// as if Redis had lost everything, and returns once it answers PING. Clients
// keep their address and see their connections drop.
func (r *Redis) RestartFlushed(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return errors.New("faults: redis restart after Stop")
	}
	if r.srv != nil {
		r.srv.kill()
		r.srv = nil
	}
	return r.start(ctx)
}

// Stop kills the server's process group and waits for it. It is safe to call
// more than once.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.srv != nil {
		r.srv.kill()
		r.srv = nil
	}
	return nil
}

// start runs a new server on r.port; it is called with r.mu held, or before
// r is shared.
func (r *Redis) start(ctx context.Context) error {
	srv, err := startRedisServer(ctx, r.bin, r.dir, r.port, nil)
	if err != nil {
		return err
	}
	r.srv = srv
	return nil
}

// startRedisServer runs redis-server on port with nothing persisted, dir as
// its working directory and log (dir/redis.log), and extra arguments after
// the common ones, and returns once it answers PING.
func startRedisServer(ctx context.Context, bin, dir string, port int, extra []string) (*server, error) {
	// No persistence is configured, but a client's SAVE or BGSAVE still
	// writes a dump, which the next start would load.
	if err := os.Remove(filepath.Join(dir, "dump.rdb")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("faults: flush redis dump: %w", err)
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", "", // stdout, which is the log file startServer opened
	}
	return startRedisProcess(ctx, bin, dir, port, append(args, extra...))
}

// startRedisProcess runs bin with args, logging to dir/redis.log, and returns
// once 127.0.0.1:port answers PING.
func startRedisProcess(ctx context.Context, bin, dir string, port int, args []string) (*server, error) {
	srv, err := startServer(bin, args, dir, filepath.Join(dir, "redis.log"), nil)
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := srv.waitReady(ctx, func(ctx context.Context) error { return pingRedis(ctx, addr) }); err != nil {
		srv.kill()
		return nil, srv.withLog(fmt.Errorf("faults: redis-server on %s: %w", addr, err))
	}
	return srv, nil
}

func pingRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(probeOptions(addr))
	defer c.Close()
	return c.Ping(ctx).Err()
}

// probeOptions are those of a client that asks a server one thing: one
// dial, no retries (the caller polls, every 20ms rather than go-redis's
// 100ms), one connection.
func probeOptions(addr string) *redis.Options {
	return &redis.Options{Addr: addr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1, PoolSize: 1}
}
