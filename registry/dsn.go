package registry

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ValidateDSN checks that dsn is a postgres:// (or postgresql://) URL with a
// host. The error never contains the DSN.
func ValidateDSN(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("%w: DSN %s is not a postgres://user@host:port/database URL", ErrInvalid, Redact(dsn))
	}
	return nil
}

// ValidateShardDSN is ValidateDSN for a shard being added: the DSN must
// also name its database, for pgx would otherwise connect to the database
// named like the user, which for the roles the pools connect as is none.
// (Shards registered before are read as they are.)
func ValidateShardDSN(dsn string) error {
	if err := ValidateDSN(dsn); err != nil {
		return err
	}
	u, _ := url.Parse(dsn)
	if q := u.Query(); strings.Trim(u.Path, "/") == "" && !q.Has("dbname") && !q.Has("database") {
		return fmt.Errorf("%w: DSN %s names no database: postgres://user@host:port/database", ErrInvalid, Redact(dsn))
	}
	return nil
}

// WithUser returns dsn with its user replaced by user. The password is kept
// only when the user does not change: other roles authenticate through
// PGPASSFILE (~/.pgpass), certificates, or a pool hook of the router.
func WithUser(dsn, user string) (string, error) {
	if err := ValidateDSN(dsn); err != nil {
		return "", err
	}
	u, _ := url.Parse(dsn)
	if u.User == nil || u.User.Username() != user {
		u.User = url.User(user)
		if q := u.Query(); q.Has("password") {
			q.Del("password")
			u.RawQuery = q.Encode()
		}
	}
	return u.String(), nil
}

var (
	keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	userinfo        = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
)

// Redact returns dsn with its password replaced by xxxxx, for logs and
// errors. It handles URLs (with a password in the user info or in a
// password= parameter) and keyword/value strings, and also text that
// cannot be parsed as either.
func Redact(dsn string) string {
	// A URL, or scheme-less text url.Parse still reads a user and a
	// password from ("//user:pw@host").
	if u, err := url.Parse(dsn); err == nil && (u.Scheme != "" || u.User != nil) {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	s := userinfo.ReplaceAllString(dsn, "${1}xxxxx@")
	s = keywordPassword.ReplaceAllString(s, "${1}xxxxx")
	return strings.TrimSpace(s)
}

// SameDatabase reports whether two shard DSNs name the same database on the
// same server (host, port and database; users and options aside).
func SameDatabase(a, b string) bool {
	key := func(dsn string) string {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "5432"
		}
		db := strings.Trim(u.Path, "/")
		if q := u.Query(); db == "" {
			db = q.Get("dbname") + q.Get("database")
		}
		return strings.ToLower(host) + ":" + port + "/" + db
	}
	return key(a) == key(b)
}
