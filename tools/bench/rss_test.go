package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/parkd/parkd/tools/cluster"
)

func TestParseProcStatus(t *testing.T) {
	status := `Name:	parkd
Umask:	0022
State:	S (sleeping)
Pid:	4242
VmPeak:	 1261300 kB
VmSize:	 1261300 kB
VmHWM:	   48128 kB
VmRSS:	   45312 kB
RssAnon:	   30000 kB
Threads:	9
`
	st, err := parseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if st.RSSKB != 45312 || st.HWMKB != 48128 {
		t.Fatalf("status = %+v", st)
	}
	// A zombie has no Vm lines.
	if _, err := parseStatus(strings.NewReader("Name:\tparkd\nState:\tZ (zombie)\n")); err == nil {
		t.Fatal("a status without VmRSS should be an error")
	}
	if _, err := parseStatus(strings.NewReader("VmRSS:\t12 MB\nVmHWM:\t13 kB\n")); err == nil {
		t.Fatal("an unexpected unit should be an error")
	}
}

func TestSamplerReadsItself(t *testing.T) {
	s := &RSSSampler{Procs: func() []cluster.ProcRef {
		return []cluster.ProcRef{{Name: "self", PID: os.Getpid()}, {Name: "gone", PID: 1 << 30}}
	}}
	s.Sample()
	s.Sample()
	r := s.Result()
	if r.Samples != 2 || len(r.Procs) != 1 || r.Procs[0].Name != "self" || r.Procs[0].PeakKB <= 0 ||
		r.Procs[0].HWMKB < r.Procs[0].PeakKB || r.PeakTotalKB != r.Procs[0].PeakKB && r.PeakTotalKB < r.Procs[0].LastKB {
		t.Fatalf("result = %+v", r)
	}
}
