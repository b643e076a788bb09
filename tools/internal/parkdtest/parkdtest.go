// Package parkdtest builds the parkd binary that the lab's tests drive: from
// this checkout's cmd/parkd, once per test process, with the race detector
// when the tests run with it, so that parkd's own code is raced under the
// lab's load as well.
package parkdtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	once  sync.Once
	dir   string
	built string
	err   error
)

// Binary is the path of the parkd executable; the test fails if it cannot be
// built.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() { built, err = build() })
	if err != nil {
		t.Fatalf("build parkd: %v", err)
	}
	return built
}

// Main runs the tests of a package and then removes the binary, if one was
// built: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

func build() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// Built in parkd's own module, with its go.mod, as `make build` builds it.
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/parkd/parkd").Output()
	if err != nil {
		return "", fmt.Errorf("find parkd's module: %w", err)
	}
	if dir, err = os.MkdirTemp("", "parkdlab-test-"); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "parkd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, "./cmd/parkd")...)
	cmd.Dir = strings.TrimSpace(string(out))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return bin, nil
}
