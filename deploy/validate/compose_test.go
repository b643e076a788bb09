package validate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "../compose.yaml"

// composeEnv makes deploy/.env the way compose.yaml and deploy/README.md say, with
// `openssl rand -hex` values (hex of random bytes), in a directory of its own beside a copy of
// compose.yaml, as Compose finds .env beside the file it is given. It returns the directory.
func composeEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	env := "PARKD_JWT_SECRET=" + randomHex(32) + "\nPOSTGRES_PASSWORD=" + randomHex(16) + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// loadCompose loads dir/compose.yaml as `docker compose -f dir/compose.yaml --profile '*'`
// does: .env beside it, interpolation, and validation against the compose-spec JSON schema
// (compose-go's own copy of it, offline).
func loadCompose(t *testing.T, dir string) *types.Project {
	t.Helper()
	p, err := tryLoadCompose(dir)
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	return p
}

func tryLoadCompose(dir string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithEnvFiles(), cli.WithDotEnv, cli.WithProfiles([]string{"*"}))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// Without either secret in deploy/.env (the process environment is not passed in), Compose
// must refuse to start, naming what to set: no default JWT secret, no default database password.
func TestComposeNeedsItsSecrets(t *testing.T) {
	for _, missing := range []string{"PARKD_JWT_SECRET", "POSTGRES_PASSWORD"} {
		dir := composeEnv(t)
		dotEnv := filepath.Join(dir, ".env")
		b, err := os.ReadFile(dotEnv)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.HasPrefix(line, missing+"=") {
				kept = append(kept, line)
			}
		}
		if err := os.WriteFile(dotEnv, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tryLoadCompose(dir); err == nil || !strings.Contains(err.Error(), "set "+missing+" in deploy/.env") {
			t.Errorf("compose with no %s in deploy/.env: want an error saying to set it, got %v", missing, err)
		}
	}
}

func TestCompose(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	dockerfile, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(mapKeys(p.Services)) {
		s := p.Services[name]
		if s.Image != "parkd:local" {
			continue
		}
		where := "compose service " + name
		if secret := env(s, "PARKD_JWT_SECRET"); len(secret) < minSecretBytes {
			t.Errorf("%s: PARKD_JWT_SECRET from deploy/.env made as documented is %d bytes; production needs %d", where, len(secret), minSecretBytes)
		}
		if db, err := url.Parse(env(s, "PARKD_DATABASE_URL")); err != nil || db.User == nil {
			t.Errorf("%s: PARKD_DATABASE_URL %v with a generated password does not parse: %v", where, db, err)
		}
		if s.Restart == types.RestartPolicyNo {
			continue // one-shot: migrate, seed
		}
		role := s.Command[0]
		addrVar, ok := servedOn[role]
		if !ok {
			t.Errorf("%s: command %v is not a long-running role", where, s.Command)
			continue
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) != 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/probe" {
			t.Errorf("%s: want healthcheck test [CMD, /probe, URL] (the image has no shell), got %+v", where, hc)
			continue
		}
		if !strings.Contains(string(dockerfile), "COPY --from=build /probe /probe") {
			t.Errorf("deploy/Dockerfile does not put /probe in the image, which %s's healthcheck runs", where)
		}
		u, err := url.Parse(hc.Test[2])
		port, _ := strconv.Atoi(u.Port())
		cfg := roleConfig{form: "compose", role: role, env: envMap(s)}
		if err != nil || u.Hostname() != "127.0.0.1" || port == 0 || port != cfg.port(t, addrVar) || u.Path != "/healthz" && u.Path != "/readyz" {
			t.Errorf("%s: healthcheck GETs %s; role %s serves /healthz on %s=%q", where, hc.Test[2], role, addrVar, cfg.env[addrVar])
		}
		wait := must(time.ParseDuration(defaultStartupWait))
		if v := env(s, "PARKD_STARTUP_WAIT"); v != "" {
			wait = must(time.ParseDuration(v))
		}
		if hc.StartPeriod == nil || time.Duration(*hc.StartPeriod) < wait {
			t.Errorf("%s: healthcheck start_period %v is shorter than the %s the process may wait for Postgres and Redis before it listens", where, hc.StartPeriod, wait)
		}
	}
	checkPools(t, "compose", composeRoles(t, p), composeMaxConnections(t, p))
}

// composeMaxConnections is max_connections as the compose file starts Postgres.
func composeMaxConnections(t *testing.T, p *types.Project) int {
	t.Helper()
	pg, ok := p.Services["postgres"]
	if !ok {
		t.Fatal("compose: no postgres service")
	}
	for i, a := range pg.Command {
		if v, ok := strings.CutPrefix(a, "max_connections="); ok && i > 0 && pg.Command[i-1] == "-c" {
			return must(strconv.Atoi(v))
		}
	}
	return 100 // Postgres' default
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func envMap(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// composeRoles are the parkd services of a compose project, each with its replicas.
func composeRoles(t *testing.T, p *types.Project) []roleConfig {
	t.Helper()
	var out []roleConfig
	for _, name := range slices.Sorted(mapKeys(p.Services)) {
		s := p.Services[name]
		if s.Image != "parkd:local" || len(s.Command) == 0 {
			continue
		}
		n := 1
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			n = *s.Deploy.Replicas
		}
		out = append(out, roleConfig{form: "compose", role: s.Command[0], env: envMap(s), replicas: n})
	}
	return out
}
