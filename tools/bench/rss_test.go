package parkdbench

import (
	"os"
	"strings"
	"sync"
	"testing"
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
	s := &RSSSampler{Procs: func() []ProcRef { return []ProcRef{{Name: "self", PID: os.Getpid()}, {Name: "gone", PID: 1 << 30}} }}
	s.Sample()
	s.Sample()
	r := s.Result()
	if r.Samples != 2 || len(r.Procs) != 1 || r.Procs[0].Name != "self" || r.Procs[0].PeakKB <= 0 ||
		r.Procs[0].HWMKB < r.Procs[0].PeakKB || r.PeakTotalKB != r.Procs[0].PeakKB && r.PeakTotalKB < r.Procs[0].LastKB {
		t.Fatalf("result = %+v", r)
	}
}

func TestLineWriterCountsLevels(t *testing.T) {
	var out strings.Builder
	w := &lineWriter{prefix: "[worker-1] ", dst: &out, mu: new(sync.Mutex)}
	_, _ = w.Write([]byte("time=x level=WARN msg=\"slow\"\ntime=x level=ERR"))
	_, _ = w.Write([]byte("OR msg=boom\n{\"level\":\"WARN\",\"msg\":\"json\"}\nplain\n"))
	c := w.Counts()
	if c.Warn != 2 || c.Error != 1 || len(c.Sample) != 3 {
		t.Fatalf("counts = %+v", c)
	}
	if !strings.HasPrefix(out.String(), "[worker-1] time=x level=WARN") || strings.Count(out.String(), "[worker-1] ") != 4 {
		t.Fatalf("forwarded:\n%s", out.String())
	}
	if !strings.HasSuffix(w.Tail(), "plain") {
		t.Fatalf("tail = %q", w.Tail())
	}
}
