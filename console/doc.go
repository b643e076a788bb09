// Package console is the operators' console: asynqmon, asynq's web UI, behind
// operator sign-in (asynqmon has none of its own, its issue #78), with every
// plate in a task's payload or result masked, and a read-only mode.
//
// The console is an http.Handler for everything under Path; the intake's ports
// mount it (intake.Server.Console) in `parkd serve` and `parkd monitor`.
package console
