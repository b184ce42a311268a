// Package migrate is allowed by the default allow-list (a path segment
// "migrate"): raw SQL and the hatch are its job.
package migrate

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenantry/tenantry/tenancy"
)

func Apply(ctx context.Context, pool *pgxpool.Pool) error { // want Apply:"reaches tenancy.Unscoped"
	_, err := pool.Exec(tenancy.Unscoped(ctx, "migrate: DDL"), "ALTER TABLE orders ADD COLUMN note text")
	return err
}
