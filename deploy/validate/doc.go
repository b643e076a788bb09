// Package validate holds no code: its tests check parkd's deployment files without a cluster,
// a Docker daemon or the internet, in `make test`.
//
//   - Kubernetes: the Kustomize base and the example overlay (with every component) rendered by
//     Kustomize's own library (krusty), each object decoded strictly (an unknown or misspelt
//     field fails) into the typed structs of k8s.io/api and the Prometheus Operator; then what
//     parkd needs of them: probes on the port each role serves, the HPA alone sizing workers,
//     Services, PDBs and the ServiceMonitor finding their pods, no Ingress path reaching
//     /metrics, the alert rules' PromQL parsed and every metric and label checked against the
//     source that exports it (package metrics, asynq's x/metrics).
//   - compose: loaded by compose-go, which checks it against the compose-spec JSON schema, with
//     a .env made the documented way; healthchecks on the port each role serves.
//   - systemd: `systemd-analyze verify` on every unit (where systemd is installed), and the
//     environment file's variables.
//   - Across all three: every PARKD_ variable is one the binary reads, the pool sizes and worker
//     concurrency agree, the pools fit Postgres' max_connections, example secrets are
//     placeholders the production guard refuses.
//
// It is a module of its own so that Kustomize, k8s.io/api and compose-go stay out of parkd's
// build and dependencies; it reads the product's source as files and imports none of it.
package validate
