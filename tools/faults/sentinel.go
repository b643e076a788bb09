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
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the Sentinels of a [Sentinel] monitor the
// primary under: PARKD_REDIS_URL's ?master=.
const SentinelMaster = "parkd"

// The Sentinels' settings: a primary unanswering for SentinelDownAfter is
// subjectively down; two of the three agreeing make it objectively down and
// one of them, elected, promotes the replica. FailoverTimeout bounds a
// failover in progress (and twice it is how long a Sentinel waits before
// trying the same master again), so a second failover a minute later is not
// held back. A Sentinel PINGs every second, so SentinelDownAfter must be
// well above that: at 1 s a Sentinel that had just switched to the new
// primary, not yet answered its first PING, took it for down and failed it
// over again (measured: one run in three on a busy machine), leaving the
// demoted primary taking writes for 11 s before it was made a replica.
const (
	SentinelQuorum          = 2
	SentinelDownAfter       = 2 * time.Second
	SentinelFailoverTimeout = 5 * time.Second
)

// Sentinel is a private replicated Redis watched by Redis Sentinel: a
// primary, a replica of it (--replicaof), and three Sentinels (the same
// redis-server binary with --sentinel, each with a config file of its own
// that it rewrites), every one a child process on a port of its own.
// Nothing is persisted: replication is Redis's default, asynchronous, so a
// write the primary acknowledged in its last moments may never reach the
// replica, which is what parkd's outbox, reconciler and retried requests
// must repair.
type Sentinel struct {
	bin string
	dir string

	mu        sync.Mutex
	data      []*sentinelNode // the primary and the replica, whichever is which now
	sentinels []*sentinelNode
	stopped   bool
}

// sentinelNode is one process of a Sentinel: a data node or a Sentinel.
type sentinelNode struct {
	name string // "redis-a", "redis-b", "sentinel-1"...
	dir  string
	port int
	srv  *server // nil while it is down
}

func (n *sentinelNode) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// StartSentinel starts the primary, the replica and the three Sentinels
// under dir (a directory each), and returns once the replica is in sync and
// every Sentinel knows the replica and the two other Sentinels: from then on
// a failover can happen. When ctx has no deadline the wait is bounded at a
// minute. Callers must defer Stop.
func StartSentinel(ctx context.Context, dir string) (_ *Sentinel, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("faults: redis-server is not on PATH: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("faults: sentinel dir: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultReadyTimeout)
		defer cancel()
	}
	s := &Sentinel{bin: bin, dir: dir}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	for i, name := range []string{"redis-a", "redis-b"} {
		n := &sentinelNode{name: name, dir: filepath.Join(dir, name)}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, fmt.Errorf("faults: sentinel dir: %w", err)
		}
		var extra []string
		if i == 1 {
			extra = replicaOf(s.data[0].port)
		}
		err := startOnFreePort(func(port int) error {
			n.port = port
			return s.startData(ctx, n, extra)
		})
		if err != nil {
			return nil, err
		}
		s.data = append(s.data, n)
	}
	for i := 1; i <= 3; i++ {
		n := &sentinelNode{name: fmt.Sprintf("sentinel-%d", i), dir: filepath.Join(dir, fmt.Sprintf("sentinel-%d", i))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, fmt.Errorf("faults: sentinel dir: %w", err)
		}
		err := startOnFreePort(func(port int) error {
			n.port = port
			return s.startSentinel(ctx, n, s.data[0].port)
		})
		if err != nil {
			return nil, err
		}
		s.sentinels = append(s.sentinels, n)
	}
	if err := s.awaitInSync(ctx, s.data[1]); err != nil {
		return nil, err
	}
	if err := s.awaitWatching(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func replicaOf(port int) []string {
	return []string{"--replicaof", "127.0.0.1", strconv.Itoa(port)}
}

// startData starts data node n, a replica when extra says --replicaof.
func (s *Sentinel) startData(ctx context.Context, n *sentinelNode, extra []string) error {
	// Diskless and at once: a node started again syncs from the primary in
	// milliseconds rather than after the 5 s Redis 7 waits for more replicas.
	extra = append([]string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}, extra...)
	srv, err := startRedisServer(ctx, s.bin, n.dir, n.port, extra)
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.srv = srv
	return nil
}

// startSentinel writes n's config file, which a Sentinel must be able to
// rewrite, and starts it watching the primary on primaryPort.
func (s *Sentinel) startSentinel(ctx context.Context, n *sentinelNode, primaryPort int) error {
	conf := filepath.Join(n.dir, "sentinel.conf")
	text := strings.Join([]string{
		"port " + strconv.Itoa(n.port),
		"bind 127.0.0.1",
		"daemonize no",
		`logfile ""`,
		"dir " + n.dir,
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", SentinelMaster, primaryPort, SentinelQuorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", SentinelMaster, SentinelDownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", SentinelMaster, SentinelFailoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 1", SentinelMaster),
	}, "\n") + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return fmt.Errorf("faults: %s config: %w", n.name, err)
	}
	srv, err := startRedisProcess(ctx, s.bin, n.dir, n.port, []string{conf, "--sentinel"})
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.srv = srv
	return nil
}

// URL is PARKD_REDIS_URL for the Sentinels, database 0.
func (s *Sentinel) URL() string {
	return fmt.Sprintf("redis-sentinel://%s/0?master=%s", strings.Join(s.SentinelAddrs(), ","), SentinelMaster)
}

// SentinelAddrs are the Sentinels' host:port.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		out[i] = n.addr()
	}
	return out
}

// DataAddrs are the data nodes' host:port, the primary's first when the
// Sentinels agree on it.
func (s *Sentinel) DataAddrs(ctx context.Context) []string {
	p, _ := s.Primary(ctx)
	out := []string{}
	for _, n := range s.data {
		if n.addr() == p {
			out = append([]string{p}, out...)
		} else {
			out = append(out, n.addr())
		}
	}
	return out
}

// Primary is the address a majority of the Sentinels name as the primary.
func (s *Sentinel) Primary(ctx context.Context) (string, error) {
	votes := map[string]int{}
	var errs []error
	for _, n := range s.sentinels {
		addr, err := askSentinel(ctx, n.addr())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
			continue
		}
		votes[addr]++
		if votes[addr] > len(s.sentinels)/2 {
			return addr, nil
		}
	}
	return "", fmt.Errorf("faults: no majority of Sentinels names a primary (%v): %w", votes, errors.Join(errs...))
}

func askSentinel(ctx context.Context, addr string) (string, error) {
	c := redis.NewSentinelClient(probeOptions(addr))
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("get-master-addr-by-name answered %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// KillPrimary SIGKILLs the data node the Sentinels name as the primary and
// waits until it is reaped; it returns its address.
func (s *Sentinel) KillPrimary(ctx context.Context) (string, error) {
	addr, err := s.Primary(ctx)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return "", errors.New("faults: sentinel kill after Stop")
	}
	n := s.dataNode(addr)
	if n == nil {
		return "", fmt.Errorf("faults: the Sentinels name %s as the primary, which is none of ours", addr)
	}
	if n.srv == nil {
		return "", fmt.Errorf("faults: the primary %s (%s) is down already", addr, n.name)
	}
	n.srv.kill()
	n.srv = nil
	return addr, nil
}

// AwaitPromotion waits until a majority of the Sentinels name another
// primary than old, and that node says it is one (ROLE), and returns it.
func (s *Sentinel) AwaitPromotion(ctx context.Context, old string) (string, error) {
	var last error
	for {
		addr, err := s.Primary(ctx)
		switch {
		case err != nil:
			last = err
		case addr == old:
			last = fmt.Errorf("the Sentinels still name %s", old)
		default:
			role, err := roleOf(ctx, addr)
			if err == nil && role == "master" {
				return addr, nil
			}
			last = fmt.Errorf("%s named the primary, its role: %q (%v)", addr, role, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("faults: no promotion: %w (last: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func roleOf(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(probeOptions(addr))
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("ROLE answered nothing")
	}
	role, _ := v[0].(string)
	return role, nil
}

// RestartAsReplica starts the data node at addr, which must be down, again
// empty as a replica of the present primary, and returns once it is in sync
// and every Sentinel sees it as a replica again: the topology can then fail
// over once more.
func (s *Sentinel) RestartAsReplica(ctx context.Context, addr string) error {
	primary, err := s.Primary(ctx)
	if err != nil {
		return err
	}
	if primary == addr {
		return fmt.Errorf("faults: %s is still the Sentinels' primary", addr)
	}
	_, port, _ := net.SplitHostPort(primary)
	p, _ := strconv.Atoi(port)
	s.mu.Lock()
	n := s.dataNode(addr)
	switch {
	case s.stopped:
		err = errors.New("faults: sentinel restart after Stop")
	case n == nil:
		err = fmt.Errorf("faults: %s is none of our data nodes", addr)
	case n.srv != nil:
		err = fmt.Errorf("faults: %s (%s) is running", addr, n.name)
	default:
		err = s.startData(ctx, n, replicaOf(p))
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.awaitInSync(ctx, n); err != nil {
		return err
	}
	return s.awaitWatching(ctx)
}

func (s *Sentinel) dataNode(addr string) *sentinelNode {
	for _, n := range s.data {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// awaitInSync waits until replica n's link to its primary is up.
func (s *Sentinel) awaitInSync(ctx context.Context, n *sentinelNode) error {
	c := redis.NewClient(probeOptions(n.addr()))
	defer c.Close()
	var last string
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		last = fmt.Sprint(err)
		if err == nil {
			last = info
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("faults: replica %s not in sync: %w; INFO replication:\n%s", n.name, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitWatching waits until every Sentinel sees the primary up, one replica
// up, and the two other Sentinels.
func (s *Sentinel) awaitWatching(ctx context.Context) error {
	var last error
	for {
		last = nil
		for _, n := range s.sentinels {
			if err := watching(ctx, n.addr()); err != nil {
				last = fmt.Errorf("%s: %w", n.name, err)
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("faults: the Sentinels are not watching yet: %w (%v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func watching(ctx context.Context, addr string) error {
	c := redis.NewSentinelClient(probeOptions(addr))
	defer c.Close()
	m, err := c.Master(ctx, SentinelMaster).Result()
	if err != nil {
		return err
	}
	if f := m["flags"]; f != "master" {
		return fmt.Errorf("the primary's flags are %q", f)
	}
	if m["num-other-sentinels"] != "2" {
		return fmt.Errorf("knows %s other Sentinels, not 2", m["num-other-sentinels"])
	}
	replicas, err := c.Replicas(ctx, SentinelMaster).Result()
	if err != nil {
		return err
	}
	up := 0
	for _, r := range replicas {
		if r["flags"] == "slave" && r["master-link-status"] == "ok" {
			up++
		}
	}
	if up < 1 {
		return fmt.Errorf("sees no replica up (%v)", replicas)
	}
	return nil
}

// Stop kills every process and waits for them. It is safe to call more
// than once.
func (s *Sentinel) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, n := range append(append([]*sentinelNode(nil), s.sentinels...), s.data...) {
		if n.srv != nil {
			n.srv.kill()
			n.srv = nil
		}
	}
	return nil
}
