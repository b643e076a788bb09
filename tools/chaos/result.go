package chaos

import (
	"time"

	"github.com/parkd/parkd/tools/cluster"
	"github.com/parkd/parkd/tools/load"
)

// FaultResult is one fault of a chaos run: what was done, how long parkd took
// to serve again, what the client went through meanwhile, and the audit after.
type FaultResult struct {
	Fault      Fault            `json:"fault"`
	What       string           `json:"what"`
	At         time.Time        `json:"at"`
	AtSec      float64          `json:"at_s"`     // since the load began
	InjectSec  float64          `json:"inject_s"` // the injection itself (kill, wait, restart)
	ReadySec   float64          `json:"ready_s"`  // from the injection's start to the intake's /readyz 200
	ProbeSec   float64          `json:"probe_s"`  // ... to a probe start+stop answered
	Recovered  bool             `json:"recovered"`
	Problem    string           `json:"problem,omitempty"`
	Retries    map[string]int64 `json:"retries,omitempty"` // by cause, until the next fault
	Sent       int              `json:"sent"`              // requests first sent until the next fault
	Seconds    float64          `json:"seconds"`           // from this fault to the next (or the load's end)
	PerSec     float64          `json:"sent_per_s"`        // Sent / Seconds: the load's pace under this fault
	Unanswered int              `json:"unanswered"`        // of those, not answered before their deadline
	Rejected   map[string]int   `json:"rejected,omitempty"`
	Crashed    []string         `json:"crashed,omitempty"` // processes that exited by themselves
	// Orphaned (kill-worker): tasks active in Redis both right after the
	// kill and once the worker was back: those the dead worker held.
	Orphaned []string `json:"orphaned_tasks,omitempty"`
	// redis-failover: the primary killed, the replica promoted (seconds
	// from the SIGKILL until a majority of the Sentinels named it and it
	// said it was a primary), and the killed node back as its replica.
	KilledPrimary string              `json:"killed_primary,omitempty"`
	Promoted      string              `json:"promoted,omitempty"`
	PromotedSec   float64             `json:"promoted_s,omitempty"`
	RejoinedSec   float64             `json:"rejoined_s,omitempty"`
	Check         cluster.CheckResult `json:"check"`
	CheckAfterS   float64             `json:"check_after_s"`
}

// LoadTotals are the chaos load's requests over the whole run.
type LoadTotals struct {
	Seconds        float64          `json:"seconds"`
	Users          int              `json:"users"`
	Starts         int              `json:"starts"`
	AutostopStarts int              `json:"autostop_starts"`
	Stops          int              `json:"stops"`
	Probes         int              `json:"probe_requests"`
	Applied        int              `json:"applied"`
	Rejected       map[string]int   `json:"rejected,omitempty"` // by status and code
	Unanswered     int              `json:"unanswered"`
	Late           int              `json:"answered_in_follow_up"`
	Retried        int              `json:"requests_retried"` // requests sent more than once
	MaxAttempts    int              `json:"max_attempts"`
	Retries        map[string]int64 `json:"retries,omitempty"` // by cause
	StartAnswer    load.Latency     `json:"start_answer"`      // first send to definitive answer
	StopAnswer     load.Latency     `json:"stop_answer"`
}

// Result is everything a chaos run found.
type Result struct {
	StartedAt     time.Time                   `json:"started_at"`
	Topology      string                      `json:"topology"`
	Dir           string                      `json:"dir"`
	Postgres      string                      `json:"postgres"`
	Redis         string                      `json:"redis"`
	Permits       int                         `json:"permits"`
	SetupSeconds  float64                     `json:"setup_seconds"`
	Load          LoadTotals                  `json:"load"`
	Faults        []FaultResult               `json:"faults"`
	FollowUp      string                      `json:"follow_up,omitempty"`
	Unanswered    []string                    `json:"unanswered,omitempty"` // requests not answered before their deadline, with their database status
	SettleSeconds float64                     `json:"settle_seconds"`
	WarmupPerSec  float64                     `json:"warmup_sent_per_s"` // the load's pace before the first fault
	PGDeadlocks   int                         `json:"postgres_deadlocks"`
	Lateness      load.Spread                 `json:"autostop_lateness_s"`
	LatenessBy    []WindowSpread              `json:"autostop_lateness_by_window,omitempty"`
	Early         int                         `json:"autostop_early"`
	EpochAtEnd    string                      `json:"epoch_at_end,omitempty"`
	RedisAfter    *load.RedisState            `json:"redis_after,omitempty"`
	Crashed       []string                    `json:"crashed,omitempty"`
	Logs          map[string]cluster.LogCount `json:"logs,omitempty"`
	LogKinds      []LogKind                   `json:"log_kinds,omitempty"`
	Outbound      *OutboundResult             `json:"outbound,omitempty"` // the register emulator and the webhook receiver
	Findings      []string                    `json:"findings,omitempty"` // misbehaviour that is not a check of its own
	Checks        []Check                     `json:"checks"`
	TotalSeconds  float64                     `json:"total_seconds"`
	CPUs          int                         `json:"cpus"`
	LoadStart     string                      `json:"loadavg_start"`
	LoadEnd       string                      `json:"loadavg_end"`
	Requests      []*chaosRequest             `json:"requests"`
}

// Failed is the checks that failed.
func (r *Result) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}
