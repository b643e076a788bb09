package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
)

// parseRedisURL reads PARKD_REDIS_URL into asynq's connection option, from which
// asynq's client, server, scheduler, inspector and asynqmon all connect, and so
// does parkd's own go-redis client (MakeRedisClient). The forms:
//
//	redis://[:PASSWORD@]HOST:PORT[/DB]                  one server
//	rediss://[:PASSWORD@]HOST:PORT[/DB]                 one server over TLS
//	redis-socket://[:PASSWORD@]/PATH/TO/SOCKET[?db=DB]  a Unix socket
//	redis-sentinel://[:SENTINEL_PASSWORD@]S1:PORT,S2:PORT[/DB]?master=NAME[&password=PASSWORD]
//	redis-cluster://[[USER]:PASSWORD@]N1:PORT,N2:PORT[?password=PASSWORD]
//	rediss-cluster://...                                the same over TLS
//
// The first four are asynq's own (asynq.ParseRedisURI). For Sentinel, parkd adds
// what asynq's parser leaves out: the master's password (?password=) and the
// database (/DB), which asynq would leave empty and 0. Cluster is parkd's:
// asynq has the option (RedisClusterClientOpt) but no URL form for it.
func parseRedisURL(s string) (asynq.RedisConnOpt, error) {
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
	case "redis-cluster", "rediss-cluster":
		return parseRedisCluster(u)
	case "redis-sentinel":
		return parseRedisSentinel(s, u)
	case "redis", "rediss", "redis-socket":
		if u.Scheme != "redis-socket" && u.Host == "" {
			return nil, fmt.Errorf("%s:// needs a host:port", u.Scheme)
		}
		opt, err := asynq.ParseRedisURI(s)
		if err != nil {
			return nil, err
		}
		return opt, nil
	}
	return nil, fmt.Errorf("scheme %q: want redis, rediss, redis-socket, redis-sentinel, redis-cluster or rediss-cluster", u.Scheme)
}

func parseRedisSentinel(s string, u *url.URL) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(s)
	if err != nil {
		return nil, err
	}
	f, ok := opt.(asynq.RedisFailoverClientOpt)
	if !ok {
		return nil, fmt.Errorf("redis-sentinel: asynq parsed it as %T", opt)
	}
	if f.MasterName == "" {
		return nil, errors.New("redis-sentinel:// needs ?master=NAME (the name the Sentinels monitor)")
	}
	if f.SentinelAddrs, err = hostList(u.Host); err != nil {
		return nil, fmt.Errorf("redis-sentinel: %w", err)
	}
	f.Password = u.Query().Get("password")
	if f.DB, err = pathDB(u.Path); err != nil {
		return nil, fmt.Errorf("redis-sentinel: %w", err)
	}
	return f, nil
}

func parseRedisCluster(u *url.URL) (asynq.RedisConnOpt, error) {
	addrs, err := hostList(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Scheme, err)
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("%s: Redis Cluster has only database 0, not %q", u.Scheme, p)
	}
	opt := asynq.RedisClusterClientOpt{Addrs: addrs, Username: u.User.Username()}
	opt.Password, _ = u.User.Password()
	if p := u.Query().Get("password"); p != "" {
		opt.Password = p
	}
	if u.Scheme == "rediss-cluster" {
		// No ServerName: each node's certificate is checked against that node's
		// own host name (crypto/tls takes it from the address dialled).
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}

// hostList splits "h1:p1,h2:p2" and checks each address has a port.
func hostList(hosts string) ([]string, error) {
	if hosts == "" {
		return nil, errors.New("no host:port given")
	}
	addrs := strings.Split(hosts, ",")
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("%q is not host:port", a)
		}
	}
	return addrs, nil
}

func pathDB(path string) (int, error) {
	p := strings.Trim(path, "/")
	if p == "" {
		return 0, nil
	}
	db, err := strconv.Atoi(p)
	if err != nil || db < 0 {
		return 0, fmt.Errorf("database %q is not a number", p)
	}
	return db, nil
}
