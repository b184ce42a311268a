package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tenantry/tenantry/examples/app/admin"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

type resolver struct {
	tenancy.Resolver
	suspended tenancy.ID
}

func (r resolver) Resolve(ctx context.Context, id tenancy.ID) (*tenancy.Placement, error) {
	if id == r.suspended {
		return nil, fmt.Errorf("tenant %s: %w", id, tenancy.ErrTenantSuspended)
	}
	return r.Resolver.Resolve(ctx, id)
}

// TestFleetCounts: the fleet report counts every tenant's rows on both
// shards (shared schema, own schemas), each tenant's own and no other's,
// reports a tenant it cannot reach without failing the others, and is
// served only to the admin token.
func TestFleetCounts(t *testing.T) {
	env := apptest.New(t)
	ids := []tenancy.ID{apptest.A, apptest.B, apptest.C, apptest.D}
	want := map[tenancy.ID]admin.TenantCounts{}
	for _, id := range ids {
		ctx := apptest.Ctx(id)
		var tc admin.TenantCounts
		var err error
		if tc.Customers, err = env.Client.Customer.Query().Count(ctx); err != nil {
			t.Fatal(err)
		}
		if tc.Orders, err = env.Client.Order.Query().Count(ctx); err != nil {
			t.Fatal(err)
		}
		if tc.Tags, err = env.Client.Tag.Query().Count(ctx); err != nil {
			t.Fatal(err)
		}
		// Make every tenant's counts distinct from the others'.
		for i := range len(want) + 1 {
			if _, err := env.Client.Tag.Create().SetName(fmt.Sprintf("fleet-%d-%s", i, tenancy.NewID())).Save(ctx); err != nil {
				t.Fatal(err)
			}
			tc.Tags++
		}
		want[id] = tc
	}
	suspended := tenancy.NewID()
	fleet := &admin.Fleet{
		Client:   env.Client,
		Resolver: resolver{env.Resolver, suspended},
		Tenants:  func(context.Context) ([]tenancy.ID, error) { return append(ids, suspended), nil },
	}
	h, err := admin.NewHandler(fleet, "admin-token-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, tok := range []string{"", "Bearer wrong-token-0123456789", "admin-token-0123456789"} {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/v1/tenants/counts", nil)
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("admin with %q: %d", tok, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/admin/v1/tenants/counts", nil)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rep admin.Report
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("report: %d %s (%v)", resp.StatusCode, body, err)
	}
	if rep.Schemas != 3 || rep.Errors != 1 || len(rep.Tenants) != 5 {
		t.Errorf("report over %d schemas with %d errors and %d tenants, want 3, 1, 5: %s", rep.Schemas, rep.Errors, len(rep.Tenants), body)
	}
	for _, got := range rep.Tenants {
		if got.Tenant == suspended {
			if got.Error == "" {
				t.Errorf("the suspended tenant has no error: %+v", got)
			}
			continue
		}
		w := want[got.Tenant]
		if got.Customers != w.Customers || got.Orders != w.Orders || got.Tags != w.Tags || got.Error != "" {
			t.Errorf("tenant %s: report %+v, its own context counts %+v", got.Tenant, got, w)
		}
		if got.Shard != env.Placements[got.Tenant].Shard.Name {
			t.Errorf("tenant %s on shard %q, want %q", got.Tenant, got.Shard, env.Placements[got.Tenant].Shard.Name)
		}
	}
}
