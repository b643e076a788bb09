package startup

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Refusal says whether err is an answer that waiting does not change, and if
// so what to correct in setting. It knows Postgres's SQLSTATEs and Redis's
// error replies; everything else (a refused or reset connection, a timeout, a
// server still starting: SQLSTATE 57P03, Redis LOADING) is not a refusal: the
// service may yet come.
func Refusal(err error, setting string) (fix string, ok bool) {
	var pe *pgconn.PgError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &pe):
		return postgresRefusal(pe.Code, setting)
	case errors.As(err, &cve):
		return fmt.Sprintf("the server's TLS certificate is not valid for the host in %s: correct the host name, or make this machine trust the server's CA", setting), true
	case redis.HasErrorPrefix(err, "NOAUTH"):
		return fmt.Sprintf("Redis requires a password: put it in %s (redis://:PASSWORD@HOST:PORT/DB)", setting), true
	case redis.IsAuthError(err), redis.HasErrorPrefix(err, "invalid password"): // the latter: Redis before 6
		return fmt.Sprintf("the user or password in %s is wrong", setting), true
	case redis.IsPermissionError(err):
		return fmt.Sprintf("the Redis user in %s may not run what parkd needs: grant it the commands and keys (ACL SETUSER)", setting), true
	case redis.HasErrorPrefix(err, "DB index is out of range"):
		return fmt.Sprintf("the database number in %s is beyond what the server has (its `databases` setting)", setting), true
	}
	return "", false
}

// postgresRefusal covers the SQLSTATEs a server answers a connection with that
// only a change of configuration cures.
func postgresRefusal(code, setting string) (string, bool) {
	switch {
	case code == "28P01": // invalid_password
		return fmt.Sprintf("the password in %s is wrong for that user", setting), true
	case len(code) == 5 && code[:2] == "28": // invalid_authorization_specification
		return fmt.Sprintf("the user in %s may not log in: the role does not exist, or no line of pg_hba.conf admits it from this host", setting), true
	case code == "3D000": // invalid_catalog_name
		return fmt.Sprintf("the database named in %s does not exist: create it (createdb NAME) or correct the name", setting), true
	case code == "42501": // insufficient_privilege
		return fmt.Sprintf("the user in %s may not connect to that database: GRANT CONNECT ON DATABASE NAME TO USER", setting), true
	}
	return "", false
}
