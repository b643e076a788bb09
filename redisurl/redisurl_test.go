package redisurl

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Every form parkd has taken since its first release, read by go-redis' own
// parsers into go-redis' options, with the fields the URL sets.
func TestParseRedisURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want asynq.RedisConnOpt
	}{
		{"redis://127.0.0.1:6379/0", server{&redis.Options{Network: "tcp", Addr: "127.0.0.1:6379"}}},
		{"redis://:s3cret@redis:6379/5", server{&redis.Options{Network: "tcp", Addr: "redis:6379", Password: "s3cret", DB: 5}}},
		{"redis://parkd:s3cret@redis:6379/5?dial_timeout=3s&pool_size=40", server{&redis.Options{Network: "tcp", Addr: "redis:6379",
			Username: "parkd", Password: "s3cret", DB: 5, DialTimeout: 3 * time.Second, PoolSize: 40}}},
		{"redis-socket://:pw@/run/redis/redis.sock?db=2", server{&redis.Options{Network: "unix", Addr: "/run/redis/redis.sock", Password: "pw", DB: 2}}},
		{"unix:///run/redis/redis.sock", server{&redis.Options{Network: "unix", Addr: "/run/redis/redis.sock"}}},
		{"redis-sentinel://s1:26379,s2:26379,s3:26379?master=parkd", sentinel{&redis.FailoverOptions{
			MasterName: "parkd", SentinelAddrs: []string{"s1:26379", "s2:26379", "s3:26379"}}}},
		{"redis-sentinel://:sentinel-pw@s1:26379,s2:26379/3?master=parkd&password=master-pw", sentinel{&redis.FailoverOptions{
			MasterName: "parkd", SentinelAddrs: []string{"s1:26379", "s2:26379"}, SentinelPassword: "sentinel-pw",
			Password: "master-pw", DB: 3}}},
		{"redis-sentinel://s1:26379?master_name=parkd", sentinel{&redis.FailoverOptions{MasterName: "parkd", SentinelAddrs: []string{"s1:26379"}}}},
		{"redis-cluster://n1:6379,n2:6379,n3:6379", cluster{&redis.ClusterOptions{Addrs: []string{"n1:6379", "n2:6379", "n3:6379"}}}},
		{"redis-cluster://n1:6379,n2:6379?password=pw", cluster{&redis.ClusterOptions{Addrs: []string{"n1:6379", "n2:6379"}, Password: "pw"}}},
		{"redis-cluster://parkd:pw@n1:6379", cluster{&redis.ClusterOptions{Addrs: []string{"n1:6379"}, Username: "parkd", Password: "pw"}}},
		{"redis-cluster://10.0.0.1:7000,10.0.0.2:7000/0", cluster{&redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000"}}}},
	} {
		got, err := Parse(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.url, got, c.want)
		}
	}
}

func TestParseRedisURLTLS(t *testing.T) {
	opt, err := Parse("rediss://:pw@cache.example:6380/1")
	if err != nil {
		t.Fatal(err)
	}
	if o := opt.(server).opt; o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" || o.DB != 1 {
		t.Errorf("rediss: %+v", o)
	}
	opt, err = Parse("rediss-cluster://n1.example:6379,n2.example:6379?password=pw")
	if err != nil {
		t.Fatal(err)
	}
	// No fixed ServerName: each node is checked against its own name.
	if o := opt.(cluster).opt; o.TLSConfig == nil || o.TLSConfig.ServerName != "" || o.Password != "pw" || len(o.Addrs) != 2 {
		t.Errorf("rediss-cluster: %+v", o)
	}
}

// parkd's own client (the epoch key, /readyz) is made from the same option, so
// it is a cluster or failover client exactly when asynq's is.
func TestParseRedisURLMakesMatchingClient(t *testing.T) {
	for url, want := range map[string]string{
		"redis://127.0.0.1:6379/0":                      "*redis.Client",
		"redis-sentinel://127.0.0.1:26379?master=parkd": "*redis.Client", // go-redis' failover client is a *redis.Client
		"redis-cluster://127.0.0.1:7000,127.0.0.1:7001": "*redis.ClusterClient",
	} {
		opt, err := Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := opt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			t.Fatalf("%s: not a redis.UniversalClient", url)
		}
		if got := reflect.TypeOf(c).String(); got != want {
			t.Errorf("%s: client %s, want %s", url, got, want)
		}
		c.Close()
	}
}

func TestParseRedisURLRefuses(t *testing.T) {
	for url, want := range map[string]string{
		"127.0.0.1:6379":                               "not a URL",
		"http://127.0.0.1:6379":                        "scheme",
		"redis://":                                     "host",
		"redis://127.0.0.1:6379/x":                     "database",
		"redis-sentinel://s1:26379,s2:26379":           "master",
		"redis-sentinel://s1:26379/x?master=m":         "database",
		"redis-cluster://":                             "host:port",
		"redis-cluster://n1,n2:6379":                   `"n1" is not host:port`,
		"redis-cluster://n1:6379/2":                    "only database 0",
		"redis-cluster://:pw@n1:6379,%zz":              "not a URL",
		"redis://127.0.0.1:6379/0?pool=40":             "unexpected option: pool",
		"redis-sentinel://s1:26379?master=m&db=x":      "database",
		"redis://:top-secret@127.0.0.1:6379/%zz?x=%zz": "not a URL",
		"redis://:top-secret@127.0.0.1:99999/0":        "port \"99999\"",
		"rediss://cache:0/0":                           "port \"0\"",
		"redis://cache:/0":                             "empty port",
		"redis-sentinel://s1:26379,s2:0?master=m":      `"s2:0": port "0"`,
		"redis-sentinel://s1:99999?master=m":           `port "99999"`,
		"redis-cluster://n1:6379,n2:65536":             `port "65536"`,
	} {
		_, err := Parse(url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "top-secret") {
			t.Errorf("%s: the error repeats the password: %v", url, err)
		}
	}
}
