package validate

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

const (
	systemdDir = "../systemd"
	envExample = "../systemd/parkd.env.example"
	// The paths the units name, as deploy/README.md installs them.
	binaryPath  = "/usr/local/bin/parkd"
	envFilePath = "/etc/parkd/parkd.env"
)

// unitFiles are the unit files of deploy/systemd by name.
func unitFiles(t *testing.T) map[string][]*unit.UnitOption {
	t.Helper()
	out := map[string][]*unit.UnitOption{}
	for _, pattern := range []string{"*.service", "*.target"} {
		paths, err := filepath.Glob(filepath.Join(systemdDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			opts, err := unit.DeserializeOptions(bytes.NewReader(b))
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			out[filepath.Base(p)] = opts
		}
	}
	if len(out) == 0 {
		t.Fatalf("no unit files in %s", systemdDir)
	}
	return out
}

func values(opts []*unit.UnitOption, section, name string) []string {
	var out []string
	for _, o := range opts {
		if o.Section == section && o.Name == name {
			out = append(out, o.Value)
		}
	}
	return out
}

// TestSystemdVerify runs systemd's own checker on every unit. It warns, and still exits 0, on
// an unknown key or a value it cannot parse, so any output fails the test. The units name the
// installed binary, which is not installed here: a copy of them names a stand-in instead.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit files are parsed by TestSystemdUnits only")
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "parkd")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var args []string
	for name := range unitFiles(t) {
		b, err := os.ReadFile(filepath.Join(systemdDir, name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(binaryPath), []byte(stand))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "@.service") {
			name = strings.Replace(name, "@.service", "@1.service", 1) // a template is checked as an instance
		}
		args = append(args, filepath.Join(dir, name))
	}
	slices.Sort(args)
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnits: every role's unit runs the installed binary with the shared environment
// file, and the environment file holds only what it may: variables parkd reads, none that the
// units set per role (systemd lets EnvironmentFile= override Environment=), and a JWT secret
// that is a placeholder production refuses.
func TestSystemdUnits(t *testing.T) {
	for name, opts := range unitFiles(t) {
		if !strings.HasSuffix(name, ".service") {
			continue
		}
		exec := values(opts, "Service", "ExecStart")
		if len(exec) != 1 || !strings.HasPrefix(exec[0], binaryPath+" ") {
			t.Errorf("%s: ExecStart %v, want %s ROLE", name, exec, binaryPath)
		}
		if ef := values(opts, "Service", "EnvironmentFile"); !slices.Equal(ef, []string{envFilePath}) {
			t.Errorf("%s: EnvironmentFile %v, want %s", name, ef, envFilePath)
		}
		if len(values(opts, "Unit", "Description")) != 1 {
			t.Errorf("%s: no Description", name)
		}
	}
	file, text := readEnvFile(t, envExample)
	perRole := map[string]bool{}
	for _, c := range systemdUnitRoles(t) {
		for k := range c.env {
			perRole[k] = true
		}
	}
	for k := range file {
		if perRole[k] {
			t.Errorf("%s sets %s, which the units set per role: the file would override every unit's value", envExample, k)
		}
	}
	if file["PARKD_ENV"] != "production" {
		t.Errorf("%s: PARKD_ENV=%q, want production", envExample, file["PARKD_ENV"])
	}
	checkPlaceholderSecret(t, envExample, file["PARKD_JWT_SECRET"], text)
}

// readEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= does (comments and blank
// lines skipped; the example uses no quoting).
func readEnvFile(t *testing.T, path string) (map[string]string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(v, `"'`) {
			t.Errorf("%s:%d: want KEY=VALUE without quotes, got %q", path, n, line)
			continue
		}
		out[k] = v
	}
	return out, string(b)
}

// systemdUnitRoles are the roles' units with the Environment= lines each sets itself.
func systemdUnitRoles(t *testing.T) []roleConfig {
	t.Helper()
	var out []roleConfig
	for _, name := range slices.Sorted(mapKeys(unitFiles(t))) {
		opts := unitFiles(t)[name]
		exec := values(opts, "Service", "ExecStart")
		if len(exec) != 1 {
			continue
		}
		f := strings.Fields(exec[0])
		if len(f) != 2 {
			t.Errorf("%s: ExecStart %q, want the binary and a role", name, exec[0])
			continue
		}
		env := map[string]string{}
		for _, v := range values(opts, "Service", "Environment") {
			for _, kv := range strings.Fields(v) {
				k, val, _ := strings.Cut(kv, "=")
				env[k] = strings.ReplaceAll(val, "%i", "1")
			}
		}
		out = append(out, roleConfig{form: "systemd", role: f[1], env: env, replicas: 1})
	}
	return out
}

// systemdRoles are the units' roles with their whole environment: the file's, overridden by
// nothing (the test above keeps per-role variables out of it), plus each unit's own.
func systemdRoles(t *testing.T) []roleConfig {
	t.Helper()
	file, _ := readEnvFile(t, envExample)
	cfgs := systemdUnitRoles(t)
	for _, c := range cfgs {
		for k, v := range file {
			c.env[k] = v
		}
	}
	return cfgs
}
