// Package tenancy scopes every database operation of an Ent application to
// one tenant, and fails closed when there is none.
//
// It has four parts that work together:
//
//   - the tenant scope carried by a context ([WithTenant], [FromContext]) and
//     the one named escape hatch for admin and migration code ([Unscoped]);
//   - [Mixin], which an Ent schema embeds to become tenant-scoped: a
//     tenant_id column, a query interceptor that adds tenant_id = $tenant to
//     every query, eager load and traversal, and a mutation hook that stamps
//     creates and scopes updates and deletes;
//   - [Driver], an Ent dialect.Driver on pgx that routes each statement to the
//     tenant's shard and schema and sends transaction-local settings
//     (search_path, app.current_tenant_id, plan limits) in the same round
//     trip as the statement, so nothing outlives the transaction;
//   - [Resolver], which maps a tenant to its placement ([StaticResolver] for
//     fixed setups and tests).
//
// Without a tenant in the context every query and mutation returns an error
// wrapping [ErrNoTenant]; it never returns an empty result instead.
package tenancy
