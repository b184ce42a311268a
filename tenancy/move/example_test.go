package move_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy/move"
)

// Move tenant acme to shard s2 while it is served; on failure before the
// flip the move has rolled back, after it the move must be resumed.
func Example() {
	ctx := context.Background()
	store, err := registry.Open(ctx, os.Getenv("TENANTRY_REGISTRY"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := move.New(move.Config{
		Store:    store,
		Apply:    provision.ApplySchema(desired, migrate.DefaultRoles()),
		Logger:   slog.Default(),
		Metrics:  move.NewMetrics(prometheus.NewRegistry()),
		Progress: os.Stderr,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := m.Move(ctx, move.Request{Tenant: "acme", Shard: "s2"})
	var perr *move.PhaseError
	switch {
	case errors.Is(err, move.ErrMoveInProgress):
		fmt.Println("already moving: resume or abort it")
	case errors.As(err, &perr) && perr.RolledBack:
		fmt.Println("rolled back in phase", perr.Phase, "- served by the source; run again")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Printf("moved in %s, writes fenced %s, verified %t\n", res.Duration, res.Window, res.Verified)
	}
}
