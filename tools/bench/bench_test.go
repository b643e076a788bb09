package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/tools/internal/parkdtest"
)

func TestMain(m *testing.M) { parkdtest.Main(m) }

// TestBenchSmoke runs the bench self-contained end to end with tiny sizes: a
// fresh database, this test's own Redis index, a real parkd serve (the binary
// parkdtest builds), setup through the HTTP API, the load phases and the
// audit, with a register emulator and a webhook receiver (every session
// registered, every event received, both timed). Auto-stop (minutes of
// waiting) and pgbench are left out.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts parkd and loads it for about 20 s")
	}
	_, idx := repotest.NewRedis(t)
	// The bench flushes the index, taking repotest's marks with it; claim it
	// again afterwards so that it stays reusable by later test processes.
	t.Cleanup(func() { repotest.NewRedis(t) })

	o := DefaultOptions()
	o.DatabaseURL = repotest.AdminURL()
	o.DBName = fmt.Sprintf("parkd_benchtest_%08x", rand.Uint32())
	o.DropDB = true
	o.RedisURL = repotest.RedisURL(idx)
	o.AllowClaimedRedis = true
	o.Permits, o.Concurrency, o.SetupConcurrency = 20, 4, 4
	o.Duration = 3 * time.Second
	o.Lone, o.LonePause = 3, 50*time.Millisecond
	o.ChangeEvery = 3 // changed sessions go through the run and its audit too
	o.RightsRate, o.RightsDuration, o.RightsParked, o.RightsPool, o.ScanCars = 200, 2*time.Second, 10, 16, 4
	o.Phases = []string{PhaseIdle, PhaseMax, PhaseHalf, PhaseRights, PhaseCheck}
	o.Registrar, o.Webhook, o.OutboundWait = true, true, time.Minute
	o.Parkd = parkdtest.Binary(t)
	var out strings.Builder
	o.Out = &out
	if testing.Verbose() {
		o.ChildLog = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	t.Logf("bench output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Max == nil || res.Max.Pairs == 0 || res.Half == nil || res.Half.Pairs == 0 {
		t.Fatalf("no pairs measured: max %+v half %+v", res.Max, res.Half)
	}
	if res.Idle == nil || res.Idle.Start.OK != 3 || res.Rights == nil || res.Rights.Checks.OK == 0 {
		t.Fatalf("idle %+v rights %+v", res.Idle, res.Rights)
	}
	for name, op := range map[string]OpResult{
		"idle start": res.Idle.Start, "idle stop": res.Idle.Stop,
		"max start": res.Max.Start, "max stop": res.Max.Stop,
		"half start": res.Half.Start, "half stop": res.Half.Stop,
		"rights": res.Rights.Checks,
	} {
		if n := op.ErrorCount(); n > 0 {
			t.Errorf("%s: %d errors: %v", name, n, op.Errors)
		}
	}
	if res.Check == nil || !res.Check.OK {
		t.Errorf("parkd check after the bench: %+v", res.Check)
	}
	if len(res.Crashed) > 0 {
		t.Errorf("crashed: %v", res.Crashed)
	}
	if res.RSS == nil || res.RSS.PeakTotalKB == 0 {
		t.Errorf("no memory sampled: %+v", res.RSS)
	}
	if ob := res.Outbound; ob == nil || !ob.WaitDone || ob.Rights == 0 || ob.RegistrationLag.Count != ob.Rights || ob.LagMissing > 0 ||
		ob.Events == 0 || ob.Received != ob.Events || ob.WebhookLag.Count != ob.Events {
		t.Errorf("registration and webhooks: %+v", res.Outbound)
	}
	if !strings.Contains(out.String(), "headline figures") {
		t.Errorf("no report printed")
	}
}
