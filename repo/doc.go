// Package repo is parkd's only door to Postgres: the schema (embedded SQL
// migrations), the bun models, and the statements that write each domain decision
// inside the caller's transaction. Nothing outside this package speaks SQL.
package repo
