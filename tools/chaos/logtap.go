package chaos

import (
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// LogKind is one kind of warning or error the parkd processes logged: the
// role, level, message and error with the numbers taken out, how often, by
// which processes, and the first such line in full.
type LogKind struct {
	Kind  string         `json:"kind"`
	Count int            `json:"count"`
	Procs map[string]int `json:"procs"`
	First string         `json:"first"`
}

// logTap passes the children's log lines on to dst and tallies their
// warnings and errors by kind, so that the report can say what went wrong
// in parkd without anyone reading the whole log.
type logTap struct {
	dst io.Writer

	mu      sync.Mutex
	partial []byte
	kinds   map[string]*LogKind
}

func newLogTap(dst io.Writer) *logTap {
	return &logTap{dst: dst, kinds: map[string]*LogKind{}}
}

func (t *logTap) Write(b []byte) (int, error) {
	t.mu.Lock()
	t.partial = append(t.partial, b...)
	for {
		i := strings.IndexByte(string(t.partial), '\n')
		if i < 0 {
			break
		}
		t.line(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	t.mu.Unlock()
	if t.dst == nil {
		return len(b), nil
	}
	return t.dst.Write(b)
}

var (
	logProcRE  = regexp.MustCompile(`^\[([a-z]+)(-\d+)?\] `)
	logLevelRE = regexp.MustCompile(`level=(WARN|ERROR)`)
	logMsgRE   = regexp.MustCompile(`msg=("(?:[^"\\]|\\.)*"|\S+)`)
	logErrRE   = regexp.MustCompile(` err=("(?:[^"\\]|\\.)*"|\S+)`)
	digitsRE   = regexp.MustCompile(`\d+`)
	// An event's ID names one delivery: folded so that its failures are one kind.
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
)

func (t *logTap) line(s string) {
	lv := logLevelRE.FindStringSubmatch(s)
	if lv == nil {
		return
	}
	role, proc := "?", "?"
	if m := logProcRE.FindStringSubmatch(s); m != nil {
		role, proc = m[1], m[1]+m[2]
	}
	kind := role + " " + lv[1]
	if m := logMsgRE.FindStringSubmatch(s); m != nil {
		kind += " " + m[1]
	}
	if m := logErrRE.FindStringSubmatch(s); m != nil {
		kind += " err=" + clip(digitsRE.ReplaceAllString(uuidRE.ReplaceAllString(m[1], "UUID"), "N"), 160)
	}
	k := t.kinds[kind]
	if k == nil {
		k = &LogKind{Kind: kind, Procs: map[string]int{}, First: s}
		t.kinds[kind] = k
	}
	k.Count++
	k.Procs[proc]++
}

// Kinds is every kind seen, the most frequent first.
func (t *logTap) Kinds() []LogKind {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]LogKind, 0, len(t.kinds))
	for _, k := range t.kinds {
		c := *k
		c.Procs = make(map[string]int, len(k.Procs))
		for p, n := range k.Procs {
			c.Procs[p] = n
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b LogKind) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out
}
