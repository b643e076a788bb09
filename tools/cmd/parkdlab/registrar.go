package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/parkd/parkd/tools/npr"
)

const registrarSummary = `The register emulator: a local national parking register (NPR) speaking parkd's registrar
protocol (PUT /rights/{right_id}, keeping the highest version), with GET /rights,
GET /rights/{right_id} and GET /enforcement?plate=P&area=AREA_ID[&at=RFC3339] to look, and
fault knobs. Point parkd at it with PARKD_REGISTRAR_URL=http://ADDR (and
PARKD_REGISTRAR_TOKEN=TOKEN when --token is set). Runs until SIGINT or SIGTERM, then prints
what it was asked.`

// registrarCmd is `parkdlab registrar`: flags in, npr.Register served.
func registrarCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o npr.Options
	fs := flag.NewFlagSet("registrar", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "address to listen on")
	fs.StringVar(&o.Token, "token", "", "bearer token every PUT must carry (empty: none asked)")
	fs.DurationVar(&o.Latency, "latency", 0, "added before every answer")
	fs.Float64Var(&o.Fail, "fail", 0, "share of PUTs answered 503 before storing (0 to 1)")
	fs.Float64Var(&o.LoseAck, "lose-ack", 0, "share of PUTs stored, then answered 500 or cut off (0 to 1)")
	fs.Float64Var(&o.Reorder, "reorder", 0, "share of PUTs held back a random while up to --hold, so that later ones overtake them (0 to 1)")
	fs.DurationVar(&o.Hold, "hold", npr.DefaultHold, "longest hold of a reordered PUT")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the fault draws (0: a random one)")
	if err := parseFlags(fs, registrarSummary, args, stdout, stderr); err != nil {
		return err
	}
	reg, err := npr.New(o)
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "register emulator on http://%s (token: %s; latency %s, fail %v, lose-ack %v, reorder %v)\n",
		ln.Addr(), map[bool]string{true: "required", false: "none"}[o.Token != ""], o.Latency, o.Fail, o.LoseAck, o.Reorder)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("registrar: %w", err)
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("registrar: %w", err)
	}
	s := reg.Snapshot()
	fmt.Fprintf(stdout, "register emulator stopped: %d rights held; %d PUTs: %d created, %d updated, %d stale (409), %d unauthorized, %d invalid, %d failed, %d acknowledgements lost, %d held back\n",
		len(s.Rights), s.Stats.Puts, s.Stats.Created, s.Stats.Updated, s.Stats.Stale, s.Stats.Unauthorized, s.Stats.Invalid,
		s.Stats.Failed, s.Stats.AcksLost, s.Stats.Held)
	return nil
}
