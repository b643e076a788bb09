package validate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Paths from this module's directory.
const (
	repoRoot   = "../.."
	deployDir  = ".."
	k8sBase    = "../k8s/base"
	k8sExample = "../k8s/example"
)

// The roles that run as long-lived processes, and what each serves where (cmd/parkd/run.go):
// the intake and the monitor on PARKD_HTTP_ADDR, the worker and the scheduler only on
// PARKD_METRICS_ADDR, and only when it is set.
var servedOn = map[string]string{
	"intake":    "PARKD_HTTP_ADDR",
	"monitor":   "PARKD_HTTP_ADDR",
	"worker":    "PARKD_METRICS_ADDR",
	"scheduler": "PARKD_METRICS_ADDR",
}

// Numbers the deployment files must respect, from the contract and deploy/README.md.
const (
	// minSecretBytes: in production the JWT secret must be at least this long (README
	// "Configuration"); an example secret must be shorter, so that nobody runs with it.
	minSecretBytes = 32
	// defaultStartupWait is PARKD_STARTUP_WAIT's default: a process listens only after
	// Postgres and Redis answered, at most this long after it started.
	defaultStartupWait = "60s"
	// defaultDBMaxConns is PARKD_DB_MAX_CONNS's default.
	defaultDBMaxConns = 25
	// k8sMaxConnections is the max_connections deploy/README.md asks of the cluster's Postgres;
	// superuser_reserved_connections (3) of them are not parkd's.
	k8sMaxConnections = 200
	reservedConns     = 3
)

// roleConfig is one role's settings as one deployment form gives them.
type roleConfig struct {
	form, role string
	env        map[string]string
	replicas   int // the most that may run at once
}

func (c roleConfig) String() string { return c.form + " " + c.role }

// port is the port of the address env[name] (":9090", "127.0.0.1:8081"); 0 when unset.
func (c roleConfig) port(t *testing.T, name string) int {
	t.Helper()
	v := c.env[name]
	if v == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Errorf("%s: %s=%q is not HOST:PORT", c, name, v)
	}
	return n
}

// knownVariables is every PARKD_ variable named in parkd's Go source (tests and this module
// aside): what the binary can read.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"(PARKD_[A-Z0-9_]+)"`)
	known := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploy" || d.Name() == "tools" || strings.HasPrefix(d.Name(), ".")) && path != repoRoot {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			known[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(known) < 10 {
		t.Fatalf("found only %d PARKD_ variables in parkd's source: is %s the repository?", len(known), repoRoot)
	}
	return known
}

// parseGoDir parses the non-test Go files of a directory.
func parseGoDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}
