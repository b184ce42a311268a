package router_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
)

// One client for every tenant on every shard: the router resolves tenants
// from the registry, keeps them cached, and hears of changes by NOTIFY.
func ExampleNew() {
	ctx := context.Background()
	r, err := router.New(ctx, router.Config{
		RegistryDSN: "postgres://router@registry.internal:5432/tenantry",
		// Shard pools connect as tenantry_app / tenantry_admin; size them here.
		ConfigurePool: func(shard string, kind router.PoolKind, cfg *pgxpool.Config) error {
			cfg.MaxConns = 20
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(r)))

	tenant := tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	tctx := tenancy.WithTenant(ctx, tenant)
	for attempt := 0; ; attempt++ {
		_, err = client.Customer.Create().SetName("Ada").SetEmail("ada@example.com").Save(tctx)
		if errors.Is(err, tenancy.ErrTenantReadOnly) && attempt < 3 {
			time.Sleep(time.Second) // the tenant is being moved: retry the write
			continue
		}
		break
	}
	switch {
	case errors.Is(err, tenancy.ErrTenantSuspended), errors.Is(err, tenancy.ErrTenantDeleted),
		errors.Is(err, tenancy.ErrUnknownTenant):
		// 403/404 for this tenant
	case errors.Is(err, router.ErrRegistryUnavailable):
		// 503: an uncached tenant while the registry is down
	case err != nil:
		log.Print(err)
	}
}
