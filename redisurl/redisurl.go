// Package redisurl reads PARKD_REDIS_URL: one Redis server, a Unix socket,
// Sentinel or Cluster, in URL forms that have not changed since parkd's first
// release, through go-redis' own parsers.
package redisurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/hostport"
)

// Parse reads a Redis URL into the connection option from which
// asynq's client, server, scheduler, inspector and asynqmon all connect, and so
// does parkd's own go-redis client (MakeRedisClient). go-redis parses every
// form (redis.ParseURL, ParseFailoverURL, ParseClusterURL), query options
// included (dial_timeout, pool_size, ...: an unknown one is refused). Its own
// forms say redis:// for a Sentinel or a Cluster too; parkd's schemes say which
// it is, and a comma list of hosts stands for go-redis's repeated addr=:
//
//	redis://[[USER]:PASSWORD@]HOST:PORT[/DB]              one server
//	rediss://...                                          one server over TLS
//	redis-socket://[:PASSWORD@]/PATH/TO/SOCKET[?db=DB]    a Unix socket (go-redis: unix://, also taken)
//	redis-sentinel://[:SENTINEL_PASSWORD@]S1:PORT,S2:PORT[/DB]?master=NAME[&password=PASSWORD]
//	redis-cluster://[[USER]:PASSWORD@]N1:PORT,N2:PORT[?password=PASSWORD]
//	rediss-cluster://...                                  the same over TLS
func Parse(s string) (asynq.RedisConnOpt, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" { // go-redis would take localhost:6379
			return nil, fmt.Errorf("%s:// needs a host:port", u.Scheme)
		}
		// go-redis takes any digits, and an empty port as 6379.
		if err := hostport.CheckHost(u.Host); err != nil {
			return nil, fmt.Errorf("%s://: %w", u.Scheme, err)
		}
		opt, err := redis.ParseURL(s)
		if err != nil {
			return nil, err
		}
		return server{opt}, nil
	case "redis-socket", "unix":
		u.Scheme = "unix"
		opt, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, err
		}
		return server{opt}, nil
	case "redis-sentinel":
		if err := spreadHosts(u, "redis"); err != nil {
			return nil, err
		}
		q := u.Query()
		if m := q.Get("master"); m != "" { // go-redis calls it master_name
			q.Set("master_name", m)
			q.Del("master")
			u.RawQuery = q.Encode()
		}
		if q.Get("master_name") == "" {
			return nil, errors.New("redis-sentinel:// needs ?master=NAME (the name the Sentinels monitor)")
		}
		opt, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, err
		}
		return sentinel{opt}, nil
	case "redis-cluster", "rediss-cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("%s: Redis Cluster has only database 0, not %q", u.Scheme, p)
		}
		if err := spreadHosts(u, strings.TrimSuffix(u.Scheme, "-cluster")); err != nil {
			return nil, err
		}
		// go-redis takes a cluster's password only from the user information.
		if q := u.Query(); q.Has("password") {
			u.User = url.UserPassword(u.User.Username(), q.Get("password"))
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		opt, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		if opt.TLSConfig != nil {
			// go-redis names the first node: each node's certificate is
			// checked against that node's own host name instead (crypto/tls
			// takes it from the address dialled).
			opt.TLSConfig.ServerName = ""
		}
		return cluster{opt}, nil
	}
	return nil, fmt.Errorf("scheme %q: want redis, rediss, redis-socket, redis-sentinel, redis-cluster or rediss-cluster", u.Scheme)
}

// spreadHosts turns parkd's "h1:p1,h2:p2" host list into go-redis's form: the
// first host, the others as addr= options, each with its port; and the scheme
// into go-redis's.
func spreadHosts(u *url.URL, scheme string) error {
	if u.Host == "" {
		return fmt.Errorf("%s: no host:port given", u.Scheme)
	}
	addrs := strings.Split(u.Host, ",")
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("%s: %q is not host:port", u.Scheme, a)
		}
		if err := hostport.CheckHost(a); err != nil {
			return fmt.Errorf("%s: %q: %w", u.Scheme, a, err)
		}
	}
	q := u.Query()
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.Scheme, u.Host, u.RawQuery = scheme, addrs[0], q.Encode()
	return nil
}

// server, sentinel and cluster are go-redis' options as asynq's connection
// option: asynq's own option types carry only some of go-redis' fields, and
// would drop the rest of what the URL says.
type (
	server   struct{ opt *redis.Options }
	sentinel struct{ opt *redis.FailoverOptions }
	cluster  struct{ opt *redis.ClusterOptions }
)

func (o server) MakeRedisClient() any { return redis.NewClient(o.opt) } // NewClient copies opt

// NewFailoverClient and NewClusterClient keep and complete the options they
// are given: each client gets its own copy.
func (o sentinel) MakeRedisClient() any { c := *o.opt; return redis.NewFailoverClient(&c) }
func (o cluster) MakeRedisClient() any  { c := *o.opt; return redis.NewClusterClient(&c) }
