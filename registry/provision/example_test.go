package provision_test

import (
	"context"
	"fmt"
	"log"
	"time"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
)

// A sign-up service keeps a provisioner for the life of the process: it
// creates each new tenant's schema in one round trip (or renames one of 20
// spare schemas kept ready per shard), and offboards tenants that leave.
func ExampleProvisioner() {
	ctx := context.Background()
	s, err := registry.Open(ctx, "postgres://ops@registry.internal:5432/tenantry")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		log.Fatal(err)
	}
	prov, err := provision.New(desired, migrate.DefaultRoles(), provision.Options{Spares: 20})
	if err != nil {
		log.Fatal(err)
	}
	defer prov.Close()

	t, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, prov.Apply)
	if err != nil {
		log.Fatal(err) // run again with the same slug to resume
	}
	fmt.Println(t.Slug, t.State, t.Placement.Schema)

	// Later: stop serving it, keep its data for 30 days...
	o, err := s.Offboard(ctx, t.ID, registry.OffboardOptions{Retention: 30 * 24 * time.Hour, Reason: "closed the account"}, prov)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retired as", o.RetiredSchema, "until", o.RetainUntil)
	// ... and, from a daily job, delete what is past its retention.
	if _, err := s.Purge(ctx, time.Now(), prov); err != nil {
		log.Fatal(err)
	}
}
