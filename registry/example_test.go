package registry_test

import (
	"context"
	"fmt"
	"log"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy"
)

// A fleet's first steps: create the registry tables, register a shard,
// create a tenant (placed on the least loaded shard, its schema created by
// the foundation's migrations), then change its plan and suspend it; each
// change reaches the routers through NOTIFY.
func ExampleStore_CreateTenant() {
	ctx := context.Background()
	s, err := registry.Open(ctx, "postgres://ops@registry.internal:5432/tenantry")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Init(ctx); err != nil {
		log.Fatal(err)
	}
	err = s.AddShard(ctx, registry.Shard{Name: "eu-1", DSN: "postgres://ops@db-eu-1.internal:5432/app", Region: "eu", Capacity: 2000, Accepting: true})
	if err != nil {
		log.Fatal(err)
	}
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		log.Fatal(err)
	}
	t, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, provision.ApplySchema(desired, migrate.DefaultRoles()))
	if err != nil {
		log.Fatal(err) // run again with the same slug to resume a failed provisioning
	}
	fmt.Println(t.Slug, t.State, t.Placement.Shard, t.Placement.Schema)

	gold := tenancy.DefaultLimits
	gold.StatementTimeout, gold.MaxConns = 0, 20
	if err := s.PutPlan(ctx, registry.Plan{Name: "gold", Limits: gold, ReplicaReads: true}); err != nil {
		log.Fatal(err)
	}
	if _, err := s.SetPlan(ctx, t.ID, "gold"); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Suspend(ctx, t.ID); err != nil {
		log.Fatal(err)
	}
}

func ExampleRedact() {
	fmt.Println(registry.Redact("postgres://app:hunter2@db.internal:5432/app?sslmode=require"))
	fmt.Println(registry.Redact("host=db.internal user=app password=hunter2"))
	// Output:
	// postgres://app:xxxxx@db.internal:5432/app?sslmode=require
	// host=db.internal user=app password=xxxxx
}

func ExampleParseNotification() {
	id, epoch, all, err := registry.ParseNotification("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c 42")
	fmt.Println(id, epoch, all, err)
	_, _, all, _ = registry.ParseNotification("*")
	fmt.Println(all)
	// Output:
	// 7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c 42 false <nil>
	// true
}
