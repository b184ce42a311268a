package migrate_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	_ "github.com/jackc/pgx/v5/stdlib"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
)

func ExampleDesired_Apply() {
	ctx := context.Background()
	// A throwaway server stands in for a shard.
	c, err := pgtest.Start(ctx, pgtest.Options{Name: "example"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Once per shard, as a superuser: the owner, app and admin roles.
	super, err := sql.Open("pgx", c.SuperuserDSN())
	if err != nil {
		log.Fatal(err)
	}
	defer super.Close()
	roles := migrate.DefaultRoles()
	if err := migrate.EnsureRoles(ctx, super, roles); err != nil {
		log.Fatal(err)
	}

	// Migrations run as the owner role.
	owner, err := sql.Open("pgx", c.DSN(roles.Owner, "postgres"))
	if err != nil {
		log.Fatal(err)
	}
	defer owner.Close()

	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		log.Fatal(err)
	}
	const schema = "tenant_7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c"
	first, err := desired.Apply(ctx, owner, schema, roles)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first run:", first.Statements[0])
	second, err := desired.Apply(ctx, owner, schema, roles)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second run:", len(second.Statements), "statements")
	fmt.Println("row-level security on:", desired.TenantTables())
	// Output:
	// first run: CREATE SCHEMA IF NOT EXISTS "tenant_7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c" AUTHORIZATION "tenantry_owner"
	// second run: 0 statements
	// row-level security on: [customers line_items order_tags orders tags]
}
