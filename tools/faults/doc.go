// Package faults runs private, restartable Redis and PostgreSQL servers so a
// chaos driver can inject infrastructure faults into a parkd under load
// without touching the machine's shared servers on 5432 and 6379.
//
// Each server is a child process of the caller, listening on 127.0.0.1 on a
// port of its own, with its files under a directory the caller chooses.
// The faults on offer are the ones parkd must survive in production:
//
//   - [Redis.RestartFlushed]: Redis dies and comes back empty on the same
//     address (scheduled and pending asynq tasks are gone);
//   - [Postgres.Restart]: a fast shutdown and start, committed data kept;
//   - [Postgres.Kill] followed by [Postgres.Restart]: the postmaster and its
//     backends die at once, and the restart runs crash recovery;
//   - [Sentinel.KillPrimary], [Sentinel.AwaitPromotion] and
//     [Sentinel.RestartAsReplica]: a replicated Redis (a primary, a replica
//     and three Sentinels, from the same redis-server binary) loses its
//     primary to SIGKILL, the Sentinels promote the replica, and the killed
//     node comes back empty as the new primary's replica.
//
// Callers must defer Stop on every server they start: Stop is what ends the
// process (and, for Postgres, all its backends). As a backstop, the servers
// are started with a parent-death signal, so they are killed if the calling
// process dies without stopping them; that signal is tied to the OS thread
// that started them, which Go only retires when a goroutine locked with
// runtime.LockOSThread exits without unlocking.
//
// Use [RedisAvailable] and [PostgresAvailable] to skip tests on machines
// without the server binaries.
package faults
