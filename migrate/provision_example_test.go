package migrate_test

import (
	"context"
	"fmt"
	"log"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
)

// New tenant schemas in one round trip each: the provisioner plans the
// DDL from an empty schema once, then every Provision runs it with the
// schema's name and records the schema in the shard's ledger at the
// desired version, so fleet runs see it as current.
func ExampleProvisioner() {
	ctx := context.Background()
	shard, err := migrate.OpenShard("eu-1", "postgres://tenantry_owner@db-eu-1.internal:5432/app", 4)
	if err != nil {
		log.Fatal(err)
	}
	defer shard.DB.Close()
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		log.Fatal(err)
	}
	p, err := migrate.NewProvisioner(desired, migrate.DefaultRoles())
	if err != nil {
		log.Fatal(err)
	}
	// Optional: 10 schemas made ahead of time; Provision renames one.
	if _, err := p.Prepare(ctx, shard.DB, 10); err != nil {
		log.Fatal(err)
	}
	res, err := p.Provision(ctx, shard.DB, "tenant_7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Schema, res.Version, res.Spare)
}
