package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/repo"
)

// commandPaths lists every command of parkd's tree, as its arguments
// ("migrate status"), so that a command added later is tested too.
func commandPaths() []string {
	var paths []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			paths = append(paths, strings.TrimPrefix(sub.CommandPath(), "parkd "))
			walk(sub)
		}
	}
	walk(newRoot(&app{}))
	return paths
}

// usageEnv is a configuration every command would refuse (PARKD_ENV=prod),
// naming as Postgres and Redis a port that counts who connects.
func usageEnv(t *testing.T) ([]string, func() int64) {
	addr, dials := dialCounter(t)
	return []string{"PARKD_ENV=prod", "PARKD_DATABASE_URL=postgres://postgres@" + addr + "/parkd?sslmode=disable",
		"PARKD_REDIS_URL=redis://" + addr + "/0", "PARKD_STARTUP_WAIT=1s", "PARKD_HTTP_ADDR=" + addr}, dials.Load
}

// Every command answers -h, --help and `parkd help COMMAND` with its usage on
// standard output and exit 0: without a valid configuration, and starting
// nothing (no connection to Postgres or Redis, no port).
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Parallel() // beside TestWorkerKilledUnderLoadLosesNothing's waiting; it dials nothing real
	env, dials := usageEnv(t)
	paths := commandPaths()
	if len(paths) < 14 {
		t.Fatalf("commands: %v", paths)
	}
	t.Run("each", func(t *testing.T) {
		for _, path := range append([]string{""}, paths...) {
			for _, form := range []string{"%s -h", "%s --help", "help %s"} {
				args := strings.Fields(strings.Replace(form, "%s", path, 1))
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					stdout, stderr, code := runParkd(t, env, args...)
					usage := "Usage:\n  " + strings.TrimSpace("parkd "+path)
					if code != 0 || !strings.Contains(stdout, usage) || stderr != "" {
						t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and %q on stdout alone", code, tail(stdout, 5), tail(stderr, 5), usage)
					}
					if took := time.Since(start); took > 5*time.Second {
						t.Errorf("took %s", took)
					}
				})
			}
		}
	})
	if n := dials(); n > 0 {
		t.Errorf("connected %d times to Postgres or Redis", n)
	}
}

// A command line parkd cannot run is said on standard error with the usage, and
// exit 2, before the configuration is read; so is a command parkd refuses.
func TestRefusedCommandLines(t *testing.T) {
	env, dials := usageEnv(t)
	t.Run("each", func(t *testing.T) {
		for _, c := range []struct {
			args string
			want []string
		}{
			{"", []string{"parkd: no command given", "Available Commands:"}},
			{"wrker", []string{`parkd: unknown command "wrker"; did you mean worker?`, "Available Commands:"}},
			{"help wrker", []string{`parkd help: no command "wrker"`}},
			{"--bogus", []string{"parkd: unknown flag: --bogus"}},
			{"worker --bogus", []string{"parkd worker: unknown flag: --bogus", "Usage:\n  parkd worker"}},
			{"serve now", []string{`parkd serve: unexpected argument "now"`}},
			{"check -grace 5m", []string{"(a long flag takes two dashes: --grace)"}},
			{"check --grace soon", []string{`invalid argument "soon" for "--grace"`}},
			{"check --limit", []string{"flag needs an argument: --limit"}},
			{"migrate sideways", []string{`parkd migrate: unknown command "sideways"`}},
			{"migrate status now", []string{`parkd migrate status: unexpected argument "now"`}},
			{"import", []string{"parkd import: name what to import: registrations"}},
			{"import addresses x.csv", []string{`parkd import: unknown command "addresses"`}},
			{"import registrations", []string{"parkd import registrations: FILE.csv is missing"}},
			{"import registrations a.csv b.csv", []string{`unexpected argument "b.csv"`}},
			{"seed", []string{"parkd seed: FILE.json is missing"}},
			{"version now", []string{`parkd version: unexpected argument "now"`}},
			{"token", []string{"--role is required: resident, eloket, enforcement or operator", "--sub is required"}},
			{"token --role operator", []string{"--sub is required"}},
			{"token --sub x", []string{"--role is required"}},
			{"token --role admin --sub x", []string{`--role "admin": want resident, eloket, enforcement or operator`}},
			{"token --role resident --sub x --ttl 0s", []string{"--ttl 0s: want a positive duration"}},
			{"migrate down", []string{"parkd migrate down: refused: parkd's migrations go forward only", "restore the database backup"}},
		} {
			t.Run(c.args, func(t *testing.T) {
				t.Parallel()
				stdout, stderr, code := runParkd(t, env, strings.Fields(c.args)...)
				if code != 2 || stdout != "" {
					t.Errorf("exit %d, stdout %q; want exit 2 and nothing on stdout", code, tail(stdout, 3))
				}
				for _, w := range c.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr does not say %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stderr, "PARKD_ENV") {
					t.Errorf("the configuration was read:\n%s", stderr)
				}
			})
		}
	})
	if n := dials(); n > 0 {
		t.Errorf("connected %d times to Postgres or Redis", n)
	}
}

// The help says what `check` audits and what `retention` erases, as they are
// now: every audit's subject (events, webhook deliveries, the registrar's
// rights), how many checks run, how to send a refused right again; events
// among what retention erases, and webhook deliveries as holding no plate.
func TestHelpSaysWhatCheckAndRetentionCover(t *testing.T) {
	env, _ := usageEnv(t)
	help, _, _ := runParkd(t, env, "help")
	check, _, _ := runParkd(t, env, "check", "-h")
	retention, _, _ := runParkd(t, env, "retention", "-h")
	for _, c := range []struct {
		what, text string
		want       []string
	}{
		{"parkd help", help, []string{"events, webhook deliveries, registered rights"}},
		{"parkd check -h", check, []string{fmt.Sprintf("(%d checks)", len(repo.AuditChecks(0))), "events:", "unnumbered",
			"webhooks:", "every active webhook", "the registrar:", "right:{session}:{version} in asynqmon's registrar queue"}},
		{"parkd retention -h", retention, []string{"its events", "Webhook deliveries and the registrar's tasks hold no plate",
			"a cancelled session ended when it was cancelled"}},
	} {
		text := strings.Join(strings.Fields(c.text), " ") // the lines as one
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s does not say %q:\n%s", c.what, w, c.text)
			}
		}
	}
}

// `parkd version` (and --version) needs no configuration; a release build
// names its version and commit through -ldflags -X.
func TestVersion(t *testing.T) {
	env, dials := usageEnv(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, stderr, code := runParkd(t, env, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "parkd ") || !strings.Contains(stdout, "\ncommit ") ||
			!strings.Contains(stdout, "\ngo go1.") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if n := dials(); n > 0 {
		t.Errorf("connected %d times", n)
	}
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.4.0", "0123456789abcdef"
	if got := versionText(); !strings.HasPrefix(got, "parkd v1.4.0\ncommit 0123456789abcdef") {
		t.Errorf("with -ldflags: %q", got)
	}
}

// `parkd token --permits` narrows a resident's token to the permits given,
// to none at all when given empty; without the flag the token has no permits
// claim (every permit the resident holds).
func TestTokenPermitsFlag(t *testing.T) {
	env := []string{"PARKD_JWT_SECRET=" + strings.Repeat("k", 40)}
	for _, c := range []struct {
		args []string
		want string // the permits claim as JSON; "" for none
	}{
		{[]string{"token", "--role", "resident", "--sub", "x"}, ""},
		{[]string{"token", "--role", "resident", "--sub", "x", "--permits="}, `[]`},
		{[]string{"token", "--role", "resident", "--sub", "x", "--permits=2,3"}, `["2","3"]`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			stdout, stderr, code := runParkd(t, env, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			parts := strings.Split(strings.TrimSpace(stdout), ".")
			if len(parts) != 3 {
				t.Fatalf("not a JWT: %q", stdout)
			}
			raw, err := base64.RawURLEncoding.DecodeString(parts[1])
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]json.RawMessage
			if err := json.Unmarshal(raw, &claims); err != nil {
				t.Fatal(err)
			}
			if got := string(claims["permits"]); got != c.want {
				t.Errorf("permits claim %q, want %q", got, c.want)
			}
		})
	}
}
