package chaos

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/tools/internal/parkdtest"
)

func TestMain(m *testing.M) { parkdtest.Main(m) }

// TestChaosShort is `parkdlab chaos` in its short form: the split topology
// with 3 workers and 3 schedulers (the parkd binary parkdtest builds) on a
// private Postgres and Redis, under load, with a worker SIGKILLed, Redis
// restarted empty and Postgres restarted 15 s apart, a register emulator
// failing 30 % of calls and losing 10 % of acknowledgements, and a webhook
// receiver down for 16 s; after each fault, parkd must serve again and pass
// `parkd check`, and at the end every session must be settled within two
// minutes of its planned end, the database must agree with every answer the
// client was given, the register with every session, and the receiver and
// the feed with every event. About two and a half minutes, most of it the
// last auto-stops reaching their planned end.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("about two and a half minutes of faults under load")
	}
	o := ShortOptions()
	o.Dir = t.TempDir()
	o.Parkd = parkdtest.Binary(t)
	var out strings.Builder
	o.Out = &out
	childLog := &syncWriter{}
	o.ChildLog = childLog
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	t.Logf("parkd chaos (short form):\n%s", out.String())
	if err != nil {
		t.Logf("parkd processes' log, %s", childLog.notable(150))
		t.Fatal(err)
	}
	if len(res.Faults) != len(o.Faults) {
		t.Fatalf("%d faults injected, want %d", len(res.Faults), len(o.Faults))
	}
	if res.Load.Starts == 0 || res.Load.Stops == 0 || res.Lateness.Count == 0 {
		t.Fatalf("no load to speak of: %+v, %d auto-stops settled", res.Load, res.Lateness.Count)
	}
	// The register and the receiver went through their faults, and every
	// session and event reached them (the run's checks hold them to parkd).
	ob := res.Outbound
	if ob == nil || ob.Rights == 0 || ob.Register.Failed == 0 || ob.Register.AcksLost == 0 || ob.Register.Held == 0 ||
		ob.Receiver.Unavailable == 0 || len(ob.Outages) != 2 || ob.Events == 0 || ob.Received != ob.Events || !ob.WaitDone {
		t.Fatalf("register and receiver: %+v", ob)
	}
}

// syncWriter serialises writes to a strings.Builder, and reads of it.
type syncWriter struct {
	mu sync.Mutex
	w  strings.Builder
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// notable is the children's warning and error lines (at most n) and their
// last n lines.
func (s *syncWriter) notable(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(strings.TrimRight(s.w.String(), "\n"), "\n")
	var bad []string
	for _, l := range lines {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			bad = append(bad, l)
		}
	}
	if len(bad) > n {
		bad = append(bad[:n], "...")
	}
	tail := lines[max(0, len(lines)-n):]
	return "warnings and errors:\n" + strings.Join(bad, "\n") + "\n\nlast lines:\n" + strings.Join(tail, "\n")
}
