package validate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkPools: every process keeps up to PARKD_DB_MAX_CONNS connections, idle ones included;
// with every role at its most replicas, the sum must leave Postgres its reserved connections.
func checkPools(t *testing.T, form string, cfgs []roleConfig, maxConnections int) {
	t.Helper()
	sum := 0
	var terms []string
	for _, c := range cfgs {
		n := defaultDBMaxConns
		if v, ok := c.env["PARKD_DB_MAX_CONNS"]; ok {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n <= 0 {
				t.Errorf("%s: PARKD_DB_MAX_CONNS=%q is not a positive number", c, v)
			}
		}
		sum += c.replicas * n
		terms = append(terms, fmt.Sprintf("%s %d×%d", c.role, c.replicas, n))
	}
	if limit := maxConnections - reservedConns; sum > limit {
		t.Errorf("%s: Postgres connections at most replicas: %s = %d > %d (max_connections %d - %d reserved)",
			form, strings.Join(terms, " + "), sum, limit, maxConnections, reservedConns)
	}
}

// TestOneConfigurationAcrossForms: Kubernetes, compose and systemd run the same roles with
// the same pool sizes and worker concurrency (two forms that disagree leave the reader to
// guess which is right), and name no variable the binary does not read.
func TestOneConfigurationAcrossForms(t *testing.T) {
	known := knownVariables(t)
	forms := map[string][]roleConfig{
		"k8s":     render(t, k8sBase).roleConfigs(t),
		"compose": composeRoles(t, loadCompose(t, composeEnv(t))),
		"systemd": systemdRoles(t),
	}
	type setting struct{ role, name string }
	values := map[setting]map[string]string{} // setting -> form -> value
	for _, form := range slices.Sorted(mapKeys(forms)) {
		cfgs := forms[form]
		if len(cfgs) == 0 {
			t.Errorf("%s: no roles found", form)
		}
		for _, c := range cfgs {
			for name, v := range c.env {
				if strings.HasPrefix(name, "PARKD_") && !known[name] {
					t.Errorf("%s: %s is not a variable parkd reads (a typo, or one that was removed)", c, name)
				}
				for _, compared := range []string{"PARKD_DB_MAX_CONNS", "PARKD_WORKER_CONCURRENCY"} {
					if name != compared || (compared == "PARKD_WORKER_CONCURRENCY" && c.role != "worker") {
						continue
					}
					s := setting{c.role, name}
					if values[s] == nil {
						values[s] = map[string]string{}
					}
					values[s][form] = v
				}
			}
		}
	}
	for _, role := range []string{"intake", "worker", "scheduler", "monitor", "migrate"} {
		for _, name := range []string{"PARKD_DB_MAX_CONNS", "PARKD_WORKER_CONCURRENCY"} {
			byForm := values[setting{role, name}]
			if name == "PARKD_WORKER_CONCURRENCY" && role != "worker" {
				continue
			}
			if len(byForm) != len(forms) {
				t.Errorf("%s of %s is set in %v only; set it in every form (%v) so that each reads whole", name, role, slices.Sorted(mapKeys(byForm)), slices.Sorted(mapKeys(forms)))
			}
			distinct := map[string]bool{}
			for _, v := range byForm {
				distinct[v] = true
			}
			if len(distinct) > 1 {
				t.Errorf("%s of %s differs between forms: %v", name, role, byForm)
			}
		}
	}
}
