package bench

import "testing"

func TestParsePgbenchTPS(t *testing.T) {
	pg15 := `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 30 s
number of transactions actually processed: 28612
number of failed transactions: 0 (0.000%)
latency average = 8.387 ms
initial connection time = 14.250 ms
tps = 953.861532 (without initial connection time)
`
	pg13 := `number of transactions actually processed: 9000
latency average = 8.912 ms
tps = 897.352135 (including connections establishing)
tps = 899.063410 (excluding connections establishing)
`
	for name, c := range map[string]struct {
		out  string
		want float64
		err  bool
	}{
		"pg15":     {pg15, 953.861532, false},
		"pg13":     {pg13, 899.063410, false},
		"only-inc": {"tps = 12.5 (including connections establishing)\n", 12.5, false},
		"none":     {"pgbench: error: connection refused\n", 0, true},
		"garbage":  {"tps = lots (without initial connection time)\n", 0, true},
	} {
		got, err := parsePgbenchTPS(c.out)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: got %v, %v; want %v (error %t)", name, got, err, c.want, c.err)
		}
	}
}
