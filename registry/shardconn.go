package registry

import (
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenShard opens a database/sql handle on the shard's primary as user (the
// DSN's user replaced, see WithUser). Close it after use.
func OpenShard(sh Shard, user string) (*sql.DB, error) {
	dsn, err := WithUser(sh.DSN, user)
	if err != nil {
		return nil, fmt.Errorf("registry: shard %q: %w", sh.Name, err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("registry: shard %q: %w", sh.Name, err)
	}
	return stdlib.OpenDB(*cfg), nil
}
