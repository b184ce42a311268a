package move_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

// ack is one acknowledged write of the writer.
type ack struct {
	name string
	at   time.Time
}

// writer inserts and updates customers of one tenant continuously through
// the scoped, router-backed client, as an app would, recording every
// acknowledged write and every error.
type writer struct {
	c  *ent.Client
	id tenancy.ID

	mu        sync.Mutex
	history   map[uuid.UUID][]ack // acknowledged names of each customer, in order
	ids       []uuid.UUID
	retryable int
	others    []error
	writes    int
}

func newWriter(c *ent.Client, id tenancy.ID) *writer {
	return &writer{c: c, id: id, history: map[uuid.UUID][]ack{}}
}

func (w *writer) run(ctx context.Context) {
	sctx := ctxOf(w.id)
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("w-%d", i)
		var id uuid.UUID
		var err error
		w.mu.Lock()
		update := i%2 == 1 && len(w.ids) > 0
		if update {
			id = w.ids[rand.IntN(len(w.ids))]
		}
		w.mu.Unlock()
		if update {
			_, err = w.c.Customer.UpdateOneID(id).SetName(name).Save(sctx)
		} else {
			var cu *ent.Customer
			cu, err = w.c.Customer.Create().SetName(name).SetEmail(name + "@example.com").Save(sctx)
			if err == nil {
				id = cu.ID
			}
		}
		now := time.Now()
		w.mu.Lock()
		switch {
		case err == nil:
			w.writes++
			if !update {
				w.ids = append(w.ids, id)
			}
			w.history[id] = append(w.history[id], ack{name, now})
		case errors.Is(err, tenancy.ErrTenantReadOnly):
			w.retryable++
		default:
			w.others = append(w.others, err)
		}
		w.mu.Unlock()
		// About a thousand writes a second: continuous, without starving
		// the replication processes of CPU on a small machine.
		time.Sleep(time.Millisecond)
	}
}

// ackedAfter says whether a write was acknowledged after at.
func (w *writer) ackedAfter(at time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.history {
		if h[len(h)-1].at.After(at) {
			return true
		}
	}
	return false
}

// bystander reads and writes another tenant continuously; it must see no
// error at all.
func bystander(ctx context.Context, c *ent.Client, id tenancy.ID, ops *atomic.Int64, errs chan<- error) {
	sctx := ctxOf(id)
	for i := 0; ctx.Err() == nil; i++ {
		var err error
		if i%3 == 0 {
			_, err = c.Customer.Create().SetName("b").SetEmail(fmt.Sprintf("b%d@example.com", i)).Save(sctx)
		} else {
			_, err = c.Customer.Query().Where(customer.NameEQ("b")).Limit(5).All(sctx)
		}
		if err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("tenant %s: %w", id, err)
			return
		}
		ops.Add(1)
		time.Sleep(time.Millisecond)
	}
}

// watchFlip returns when the router serves id from shard, unfenced.
func watchFlip(ctx context.Context, r *router.Router, id tenancy.ID, shard string) time.Time {
	for ctx.Err() == nil {
		p, err := r.Resolve(ctx, id)
		if err == nil && p.Shard.Name == shard {
			if _, fenced := p.Fenced(); !fenced {
				return time.Now()
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Time{}
}

// TestMoveUnderWriter moves a tenant from s0 to s1 while a writer inserts
// and updates it through the router, and other tenants on both shards are
// served: every acknowledged write ends on the target, none lands on the
// source after the flip, the writer sees only retryable errors, the others
// none.
func TestMoveUnderWriter(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	tn := f.tenant(t, "s0")
	o0, o1 := f.tenant(t, "s0"), f.tenant(t, "s1")
	seed(t, client, tn.ID, 50)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := newWriter(client, tn.ID)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx) })
	var ops atomic.Int64
	errs := make(chan error, 2)
	for _, o := range []tenancy.ID{o0.ID, o1.ID} {
		wg.Go(func() { bystander(ctx, client, o, &ops, errs) })
	}
	time.Sleep(100 * time.Millisecond) // writes before the move
	var flipSeen time.Time
	var fenceAt time.Time
	flipDone := make(chan struct{})
	go func() { defer close(flipDone); flipSeen = watchFlip(ctx, r, tn.ID, "s1") }()

	// A sequence in the tenant's schema (the example app's ids are UUIDs):
	// its value must follow the tenant, though logical replication does
	// not carry sequences.
	seq := pgx.Identifier{tn.Placement.Schema, "move_counter"}.Sanitize()
	_, err := f.super(t, "s0").Exec(context.Background(), "CREATE SEQUENCE "+seq+"; SELECT setval('"+seq+"', 41)")
	require.NoError(t, err)
	m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
		switch p {
		case move.PhaseCopy: // the target schema exists; the application's migration would add the sequence
			_, err := f.super(t, "s1").Exec(ctx, "CREATE SEQUENCE "+seq)
			return err
		case move.PhaseFence:
			fenceAt = time.Now()
			_, err := f.super(t, "s0").Exec(ctx, "SELECT nextval('"+seq+"')") // 42, under way at the fence
			return err
		}
		return nil
	}})
	res, err := m.Move(context.Background(), move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	<-flipDone
	var next int64
	require.NoError(t, f.super(t, "s1").QueryRow(context.Background(), "SELECT nextval('"+seq+"')").Scan(&next))
	require.Equal(t, int64(43), next, "the sequence continues on the target")
	time.Sleep(100 * time.Millisecond) // writes after the move
	// At least one, however slow the machine: the checks below need it.
	eventually(t, "a write acknowledged after the flip", func() bool { return w.ackedAfter(flipSeen) })
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("another tenant saw an error: %v", err)
	}

	t.Logf("window %s (fence → flip seen by the router %s), writes %d, retryable refusals %d, bystander ops %d, copy %s %d bytes",
		res.Window, flipSeen.Sub(fenceAt), w.writes, w.retryable, ops.Load(), res.Copy, res.Bytes)
	require.Empty(t, w.others, "the writer must see only retryable errors (tenancy.ErrTenantReadOnly)")
	require.Greater(t, ops.Load(), int64(10))
	require.True(t, res.Verified, "counts and hashes equal: %+v", res.Tables)
	require.Equal(t, "s1", res.To.Shard)
	require.NotEmpty(t, res.Retired)

	got, err := f.store.Tenant(context.Background(), tn.Slug)
	require.NoError(t, err)
	require.Equal(t, registry.Active, got.State)
	require.Equal(t, registry.Placement{Shard: "s1", Schema: tn.Placement.Schema, Mode: registry.ModeSchema, Epoch: got.Placement.Epoch}, got.Placement)

	// The copy drops the target's secondary indexes and constraints and
	// rebuilds them: every one is back, as on the source.
	require.Equal(t, ddlShape(t, f.super(t, "s0"), res.Retired), ddlShape(t, f.super(t, "s1"), tn.Placement.Schema),
		"the target's indexes and constraints are the source's")
	target := customers(t, f.super(t, "s1"), tn.Placement.Schema)
	source := customers(t, f.super(t, "s0"), res.Retired)
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Greater(t, w.writes, 20)
	for id, h := range w.history {
		last := h[len(h)-1]
		assert.Equal(t, last.name, target[id], "customer %s: the last acknowledged write is on the target", id)
	}
	require.Len(t, target, 50+len(w.ids), "the target has exactly the seeded and acknowledged customers")
	afterFlip := 0
	for id, h := range w.history {
		for _, a := range h {
			if a.at.After(flipSeen) {
				afterFlip++
				assert.NotEqual(t, a.name, source[id], "customer %s: write %s acknowledged after the flip is not on the source", id, a.name)
			}
		}
	}
	require.Positive(t, afterFlip, "writes went on after the flip")
	for id, name := range source {
		if h := w.history[id]; len(h) > 0 && target[id] != name {
			require.True(t, h[len(h)-1].at.After(flipSeen), "customer %s differs between source and target only through a write after the flip", id)
		}
	}
	require.Empty(t, f.leftovers(t, "s0", tn.ID))
	require.Empty(t, f.leftovers(t, "s1", tn.ID))
	require.False(t, schemaExists(t, f.super(t, "s0"), tn.Placement.Schema), "the source schema is retired")
}
