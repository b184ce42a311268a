package admin_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tenantry/tenantry/examples/app/admin"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// The fleet report ran on the request client, behind the gate, which
// charged each schema's unscoped queries to the tenant whose placement they
// went through: the report used up that tenant's rate budget, and once it
// was throttled every tenant of its schema was reported with an error.
// Stack.Admin has no gate.
func TestFleetNotChargedToTenant(t *testing.T) {
	env := apptest.New(t)
	pa := env.Placements[apptest.A]
	slowA, err := tenancy.NewPlacement(apptest.A, pa.Shard, pa.Schema, tenancy.Limits{RatePerSec: 0.01, Burst: 3, Plan: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	res := tenancy.NewStaticResolver(nil, slowA, env.Placements[apptest.B])
	stack, err := server.NewStack(res, nil, server.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fleet := &admin.Fleet{Client: stack.Admin, Resolver: res,
		Tenants: func(context.Context) ([]tenancy.ID, error) { return []tenancy.ID{apptest.A, apptest.B}, nil }}
	for range 2 {
		rep, err := fleet.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range rep.Tenants {
			if tc.Error != "" {
				t.Errorf("tenant %s reported with error %q", tc.Tenant, tc.Error)
			}
		}
	}
	if _, err := stack.Client.Tag.Query().Count(apptest.Ctx(apptest.A)); errors.Is(err, ratelimit.ErrThrottled) {
		t.Errorf("tenant A's own query after two admin reports: %v", err)
	}
}
