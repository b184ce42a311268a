// Package provision creates tenant schemas for the registry with the
// foundation's migrations. It is separate from package registry so that
// routers, which import registry, do not link the migration engine.
package provision

import (
	"context"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
)

// ApplySchema returns the registry.ApplyFunc that creates (or brings up to
// date) a tenant schema: desired.Apply on the shard's primary, connected as
// roles.Owner — tables, composite foreign keys, row-level security and
// grants to roles.App and roles.Admin. The roles must exist on the shard
// (migrate.EnsureRoles; tenantctl shards add -ensure-roles does it).
func ApplySchema(desired *migrate.Desired, roles migrate.Roles, opts ...migrate.Options) registry.ApplyFunc {
	return func(ctx context.Context, sh registry.Shard, schema string) error {
		db, err := registry.OpenShard(sh, roles.Owner)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = desired.Apply(ctx, db, schema, roles, opts...)
		return err
	}
}
