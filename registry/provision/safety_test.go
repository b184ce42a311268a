package provision_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
)

// TestSlugThatIsAnID: a slug that reads as a tenant id is refused; it
// would name that other tenant to every command that takes a tenant
// (suspend, offboard -hard -force, ...).
func TestSlugThatIsAnID(t *testing.T) {
	f := newFixture(t)
	victim := f.create(t, registry.NewTenant{Slug: "victim", Shard: "s0"})
	_, err := f.store.CreateTenant(t.Context(), registry.NewTenant{Slug: victim.ID.String(), Shard: "s0"}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrInvalid)
	got, err := f.store.Tenant(t.Context(), victim.ID.String())
	require.NoError(t, err)
	require.Equal(t, victim.ID, got.ID)
}

// TestSchemaOfAnotherTenant: a tenant of its own schema cannot be placed in
// the schema of another tenant of the shard (offboarding it would retire
// and purge drop the other's data), nor in a spare schema.
func TestSchemaOfAnotherTenant(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	victim := f.create(t, registry.NewTenant{Slug: "victim", Shard: "s0"})
	addCustomers(t, f.router(t), victim.ID, 3)
	_, err := f.store.CreateTenant(ctx, registry.NewTenant{Slug: "other", Shard: "s0", Schema: victim.Placement.Schema}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrExists)
	_, err = f.store.CreateTenant(ctx, registry.NewTenant{Slug: "spare", Shard: "s0", Schema: "tenant_spare_0123"}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrInvalid)
	require.Equal(t, 1, f.count(t, "s0", `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, victim.Placement.Schema))
}
