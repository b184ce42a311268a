package fleetbench_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/fleetbench"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var fleets struct {
	mu sync.Mutex
	m  map[string]*fleetbench.Fleet
}

// fleetFor returns the fleet of spec on the test binary's shared cluster,
// setting it up on first use; it fails the test if PostgreSQL cannot be
// started.
func fleetFor(tb testing.TB, spec fleetbench.Spec) *fleetbench.Fleet {
	tb.Helper()
	fleets.mu.Lock()
	defer fleets.mu.Unlock()
	key := fmt.Sprintf("%+v", spec)
	if f := fleets.m[key]; f != nil {
		return f
	}
	c := pgtest.Shards(tb, 1)[0]
	start := time.Now()
	f, err := fleetbench.Setup(context.Background(), c, spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("fleet %q: %d tenants (%d in own schemas, %d in %d shared schemas, %d customers each) set up in %s",
		spec.Name, len(f.Tenants), spec.Own, spec.Shared, max(spec.SharedSchemas, 1), spec.Customers, time.Since(start).Round(100*time.Millisecond))
	if fleets.m == nil {
		fleets.m = map[string]*fleetbench.Fleet{}
	}
	fleets.m[key] = f
	return f
}

// workload is the operation mix of a tenant of the example app: a point
// read of a random customer (Customer.Get), or with probability writes a
// small write (one Order INSERT for a random customer). Both are one
// statement, one round trip, through the scoped client.
type workload struct {
	client *ent.Client
	writes float64
	nonce  string
	seq    atomic.Int64
}

func newWorkload(client *ent.Client, writes float64) *workload {
	return &workload{client: client, writes: writes, nonce: uuid.NewString()[:8]}
}

// op runs one operation of tenant t; ctx must be scoped to t.
func (w *workload) op(ctx context.Context, rng *rand.Rand, t *fleetbench.Tenant) (write bool, err error) {
	cid := t.Customers[rng.IntN(len(t.Customers))]
	if rng.Float64() < w.writes {
		n := w.seq.Add(1)
		return true, w.client.Order.Create().
			SetNumber(fmt.Sprintf("%s-%d", w.nonce, n)).
			SetCustomerID(cid).
			SetTotalCents(n % 10000).
			Exec(ctx)
	}
	cu, err := w.client.Customer.Get(ctx, cid)
	if err == nil && cu.ID != cid {
		err = fmt.Errorf("read customer %s, got %s", cid, cu.ID)
	}
	return false, err
}

// tenantContexts returns a context scoped to each tenant of f.
func tenantContexts(ctx context.Context, f *fleetbench.Fleet) []context.Context {
	out := make([]context.Context, len(f.Tenants))
	for i, t := range f.Tenants {
		out[i] = tenancy.WithTenant(ctx, t.ID)
	}
	return out
}
