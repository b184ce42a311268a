package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/examples/app/ent/lineitem"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/examples/app/ent/ordertag"
	"github.com/tenantry/tenantry/examples/app/ent/tag"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// TestLeakMatrix runs every query and mutation shape of the generated client
// against every entity, for two attacker/victim pairs: A attacks B (one
// shared schema: only the Go filter, row-level security and the composite
// foreign keys separate them) and C attacks D (own schemas on different
// shards). Every cell checks data: what the attacker gets back through the
// client, and what the admin role (BYPASSRLS) sees in the database before
// and after each write.
//
// Scopes of each cell: the attacker's context; no tenant
// (context.Background(), which must fail with ErrNoTenant and change
// nothing); a transaction of the attacker; that transaction used with the
// victim's context (ErrTenantMismatch) and without a tenant (ErrNoTenant).
// Read cells also run with the victim's ids only.
//
// Subtests are named pair/entity/shape/scope, e.g.
// "A->B/Order/HasCustomerWith(victim)/tx".
func TestLeakMatrix(t *testing.T) {
	env := apptest.New(t)
	ents := leakEntities()
	cells := 0
	for _, pr := range []struct {
		a, v   tenancy.ID
		al, vl string
	}{
		{apptest.A, apptest.B, "A", "B"},
		{apptest.C, apptest.D, "C", "D"},
	} {
		t.Run(pr.al+"->"+pr.vl, func(t *testing.T) {
			p := newLeakPair(t, env, pr.a, pr.v, pr.al, pr.vl)
			// Reads first: the writes below change the attacker's rows.
			cells += runLeakReads(t, env, p, ents)
			cells += runLeakGraph(t, env, p, leakEagerCells(p))
			cells += runLeakGraph(t, env, p, leakTraversalCells(env, p))
			cells += runLeakGraph(t, env, p, leakHasCells(p))
			cells += runLeakGraph(t, env, p, leakRawReadCells(p))
			cells += runLeakWrites(t, env, p, leakEntityWriteCells(env, p, ents))
			cells += runLeakWrites(t, env, p, leakLinkCells(env, p))
			cells += runLeakWrites(t, env, p, leakRawWriteCells(p))
			cells += runLeakTx(t, env, p)
			cells++
			t.Run("Pool/no connection held after the matrix", func(t *testing.T) {
				for i, sh := range env.Shards {
					require.Zero(t, sh.Pool.Stat().AcquiredConns(), "shard %d: connections of the shared app pool still acquired", i)
				}
			})
		})
	}
	t.Logf("leak matrix: %d cells", cells)
}

// ---------------------------------------------------------------- reads

type leakReadScope struct {
	leakScope
	victimOnly bool // query the victim's ids only
}

var leakReadScopes = []leakReadScope{
	{leakScope: scopeAttacker},
	{leakScope: leakScope{name: "attacker-victim-ids", ctx: scopeAttacker.ctx}, victimOnly: true},
	{leakScope: scopeNoTenant},
	{leakScope: scopeTx},
	{leakScope: leakScope{name: "tx-victim-ids", tx: true, ctx: scopeTx.ctx}, victimOnly: true},
	{leakScope: scopeTxVictimCtx},
	{leakScope: scopeTxNoTenant},
}

// leakReadShape is one query shape. run gets the attacker's and the
// victim's keys of the scope and queries them together; want gets the keys
// the attacker may see (its own).
type leakReadShape struct {
	name string
	run  func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error)
	want func(aKeys []string) any
}

func leakReadShapes(p *leakPair, e *leakEntity) []leakReadShape {
	a := p.a
	both := func(aKeys, vKeys []string) []string { return append(slices.Clone(aKeys), vKeys...) }
	firstOf := func(aKeys, vKeys []string) []string {
		var ks []string
		if len(aKeys) > 0 {
			ks = append(ks, aKeys[0])
		}
		if len(vKeys) > 0 {
			ks = append(ks, vKeys[0])
		}
		return ks
	}
	shapes := []leakReadShape{
		{
			name: "All",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				rows, err := e.all(ctx, c, both(aKeys, vKeys))
				return norm(rows, a.id), err
			},
			want: func(aKeys []string) any { return sorted(aKeys) },
		},
		{
			// No predicate at all: every row must be the attacker's, all of
			// its seeded rows must be there and none of the victim's.
			name: "AllUnfiltered",
			run: func(ctx context.Context, c *ent.Client, _, _ []string) (any, error) {
				rows, err := e.allAny(ctx, c)
				seen := map[string]bool{}
				foreign := []string{}
				for _, r := range rows {
					seen[r.key] = true
					if r.tenant != a.id {
						foreign = append(foreign, r.key+"@tenant:"+r.tenant.String())
					}
				}
				missing, victims := []string{}, []string{}
				for _, k := range a.keys(e.name) {
					if !seen[k] {
						missing = append(missing, k)
					}
				}
				for _, k := range p.v.keys(e.name) {
					if seen[k] {
						victims = append(victims, k)
					}
				}
				return fmt.Sprintf("foreign=%v missing=%v victim=%v", foreign, missing, victims), err
			},
			want: func([]string) any { return "foreign=[] missing=[] victim=[]" },
		},
		{
			name: "Only",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				r, err := e.only(ctx, c, firstOf(aKeys, vKeys))
				return notFound(r, err, a.id)
			},
			want: func(aKeys []string) any {
				if len(aKeys) == 0 {
					return "NotFound"
				}
				return aKeys[0]
			},
		},
		{
			name: "First",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				r, err := e.first(ctx, c, both(aKeys, vKeys))
				k, err := notFound(r, err, a.id)
				if slices.Contains(aKeys, k) {
					k = "one of the attacker's"
				}
				return k, err
			},
			want: func(aKeys []string) any {
				if len(aKeys) == 0 {
					return "NotFound"
				}
				return "one of the attacker's"
			},
		},
		{
			name: "Count",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				return e.count(ctx, c, both(aKeys, vKeys))
			},
			want: func(aKeys []string) any { return len(aKeys) },
		},
		{
			name: "Exist",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				return e.exist(ctx, c, both(aKeys, vKeys))
			},
			want: func(aKeys []string) any { return len(aKeys) > 0 },
		},
		{
			name: "Aggregate",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				return e.aggregate(ctx, c, both(aKeys, vKeys))
			},
			want: func(aKeys []string) any {
				var sum int64
				for _, k := range aKeys {
					r, _ := a.seedRow(e.name, k)
					sum += r.num
				}
				return leakAgg{Count: len(aKeys), Sum: sum}
			},
		},
		{
			name: "GroupBy",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				return e.groupBy(ctx, c, both(aKeys, vKeys))
			},
			want: func(aKeys []string) any {
				m := map[tenancy.ID]int{}
				if len(aKeys) > 0 {
					m[a.id] = len(aKeys)
				}
				return m
			},
		},
		{
			name: "Select",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				vs, err := e.sel(ctx, c, both(aKeys, vKeys))
				return sorted(vs), err
			},
			want: func(aKeys []string) any {
				var vs []string
				for _, k := range aKeys {
					r, _ := a.seedRow(e.name, k)
					vs = append(vs, r.sel)
				}
				return sorted(vs)
			},
		},
	}
	if e.ids != nil {
		shapes = append(shapes, leakReadShape{
			name: "IDs",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				ids, err := e.ids(ctx, c, both(aKeys, vKeys))
				return sorted(ids), err
			},
			want: func(aKeys []string) any { return sorted(aKeys) },
		})
	}
	if e.get != nil {
		// Get the first key of each tenant, one at a time.
		shapes = append(shapes, leakReadShape{
			name: "Get",
			run: func(ctx context.Context, c *ent.Client, aKeys, vKeys []string) (any, error) {
				var got []string
				for _, k := range firstOf(aKeys, vKeys) {
					r, err := e.get(ctx, c, k)
					s, err := notFound(r, err, a.id)
					if err != nil {
						return nil, err
					}
					got = append(got, s)
				}
				return got, nil
			},
			want: func(aKeys []string) any {
				var want []string
				if len(aKeys) > 0 {
					want = append(want, aKeys[0])
				}
				return append(want, "NotFound") // the victim's
			},
		})
	}
	return shapes
}

func runLeakReads(t *testing.T, env *apptest.Env, p *leakPair, ents map[string]*leakEntity) int {
	n := 0
	for _, name := range leakEntityNames {
		e := ents[name]
		for _, sh := range leakReadShapes(p, e) {
			t.Run(name+"/"+sh.name, func(t *testing.T) {
				for _, rs := range leakReadScopes {
					n++
					t.Run(rs.name, func(t *testing.T) {
						aKeys, vKeys := p.a.keys(name), p.v.keys(name)
						if rs.victimOnly {
							aKeys = nil
						}
						ctx, c, end := rs.open(t, env, p)
						got, err := safely(func() (any, error) { return sh.run(ctx, c, aKeys, vKeys) })
						_ = end(err)
						require.NotErrorIs(t, err, errLeakPanic)
						if rs.wantErr != nil {
							require.ErrorIs(t, err, rs.wantErr)
							return
						}
						require.NoError(t, err)
						require.Equal(t, sh.want(aKeys), got)
					})
				}
			})
		}
	}
	return n
}

// ---------------------------------------------------- eager loads, traversals, predicates, raw reads

// leakGraphCell is a read that is not parametrized by keys.
type leakGraphCell struct {
	name string // entity/shape
	run  func(ctx context.Context, c *ent.Client) (any, error)
	want any
	// anyErr: in the scopes that must work, an error is an acceptable
	// outcome too (raw SQL naming another schema); the result must still
	// equal want when there is none.
	anyErr bool
	// refusal: an error that proves the statement never ran (raw SQL
	// refused by tenancy.CheckRawSQL); accepted in every scope that has a
	// tenant. Without a tenant ErrNoTenant is still required.
	refusal error
}

func runLeakGraph(t *testing.T, env *apptest.Env, p *leakPair, cells []leakGraphCell) int {
	n := 0
	for _, gc := range cells {
		t.Run(gc.name, func(t *testing.T) {
			for _, s := range leakScopes {
				n++
				t.Run(s.name, func(t *testing.T) {
					ctx, c, end := s.open(t, env, p)
					got, err := safely(func() (any, error) { return gc.run(ctx, c) })
					_ = end(err)
					require.NotErrorIs(t, err, errLeakPanic)
					if gc.refusal != nil && s.wantErr != tenancy.ErrNoTenant && errors.Is(err, gc.refusal) {
						t.Logf("refused: %v", err)
						return
					}
					if s.wantErr != nil {
						require.ErrorIs(t, err, s.wantErr)
						return
					}
					if gc.anyErr && err != nil {
						t.Logf("refused: %v", err)
						return
					}
					require.NoError(t, err)
					require.Equal(t, gc.want, got)
				})
			}
		})
	}
	return n
}

// keyOf names a neighbor: its key, or a LEAK marker when it belongs to
// another tenant than owner.
func keyOf(key string, tenant, owner tenancy.ID) string {
	if tenant != owner {
		return "LEAK:" + key + "@tenant:" + tenant.String()
	}
	return key
}

func joinSorted(ks []string) string { return strings.Join(sorted(ks), ",") }

func leakEagerCells(p *leakPair) []leakGraphCell {
	a, v := p.a, p.v
	ao := a.id
	orders := []uuid.UUID{a.order, a.orphan, v.order, v.orphan}
	li := func(lt *leakTenant) []string { return []string{lt.lineItems[0].String(), lt.lineItems[1].String()} }

	ordersBy := func(ctx context.Context, c *ent.Client, q *ent.OrderQuery, f func(*ent.Order) string) (any, error) {
		ns, err := q.Where(order.IDIn(orders...)).All(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		for _, n := range ns {
			m[keyOf(n.ID.String(), n.TenantID, ao)] = f(n)
		}
		return m, nil
	}
	custOf := func(n *ent.Order) string {
		if n.Edges.Customer == nil {
			return ""
		}
		return keyOf(n.Edges.Customer.ID.String(), n.Edges.Customer.TenantID, ao)
	}
	lisOf := func(n *ent.Order) string {
		var ks []string
		for _, x := range n.Edges.LineItems {
			ks = append(ks, keyOf(x.ID.String(), x.TenantID, ao))
		}
		return joinSorted(ks)
	}
	tagsOf := func(n *ent.Order) string {
		var ks []string
		for _, x := range n.Edges.Tags {
			ks = append(ks, keyOf(x.ID.String(), x.TenantID, ao))
		}
		return joinSorted(ks)
	}
	otsOf := func(n *ent.Order) string {
		var ks []string
		for _, x := range n.Edges.OrderTags {
			ks = append(ks, keyOf(otKey(x.OrderID, x.TagID), x.TenantID, ao))
		}
		return joinSorted(ks)
	}
	o, orph := a.order.String(), a.orphan.String()
	none := map[string]string{o: "", orph: ""}

	cells := []leakGraphCell{
		{name: "Order/WithCustomer", want: map[string]string{o: a.customer.String(), orph: ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithCustomer(), custOf)
			}},
		{name: "Order/WithCustomer(victim-only)", want: none,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithCustomer(func(q *ent.CustomerQuery) { q.Where(customer.ID(v.customer)) }), custOf)
			}},
		{name: "Order/WithLineItems", want: map[string]string{o: joinSorted(li(a)), orph: ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithLineItems(), lisOf)
			}},
		{name: "Order/WithLineItems(victim-only)", want: none,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithLineItems(func(q *ent.LineItemQuery) { q.Where(lineitem.IDIn(v.lineItems[:]...)) }), lisOf)
			}},
		{name: "Order/WithTags", want: map[string]string{o: a.tag.String(), orph: ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithTags(), tagsOf)
			}},
		{name: "Order/WithTags(victim-only)", want: none,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithTags(func(q *ent.TagQuery) { q.Where(tag.ID(v.tag)) }), tagsOf)
			}},
		{name: "Order/WithOrderTags", want: map[string]string{o: otKey(a.order, a.tag), orph: ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithOrderTags(), otsOf)
			}},
		{name: "Order/WithOrderTags(victim-only)", want: none,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return ordersBy(ctx, c, c.Order.Query().WithOrderTags(func(q *ent.OrderTagQuery) { q.Where(ordertag.TagID(v.tag)) }), otsOf)
			}},
		{name: "Customer/WithOrders", want: map[string]string{a.customer.String(): o},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return customersWithOrders(ctx, c, p, nil)
			}},
		{name: "Customer/WithOrders(victim-only)", want: map[string]string{a.customer.String(): ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return customersWithOrders(ctx, c, p, func(q *ent.OrderQuery) { q.Where(order.IDIn(v.order, v.orphan)) })
			}},
		{name: "LineItem/WithOrder", want: map[string]string{li(a)[0]: o, li(a)[1]: o},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return lineItemsWithOrder(ctx, c, p, nil)
			}},
		{name: "LineItem/WithOrder(victim-only)", want: map[string]string{li(a)[0]: "", li(a)[1]: ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return lineItemsWithOrder(ctx, c, p, func(q *ent.OrderQuery) { q.Where(order.ID(v.order)) })
			}},
		{name: "Tag/WithOrders", want: map[string]string{a.tag.String(): o},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return tagsWith(ctx, c, p, func(q *ent.TagQuery) { q.WithOrders() })
			}},
		{name: "Tag/WithOrders(victim-only)", want: map[string]string{a.tag.String(): ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return tagsWith(ctx, c, p, func(q *ent.TagQuery) { q.WithOrders(func(q *ent.OrderQuery) { q.Where(order.ID(v.order)) }) })
			}},
		{name: "Tag/WithOrderTags", want: map[string]string{a.tag.String(): otKey(a.order, a.tag)},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return tagsWith(ctx, c, p, func(q *ent.TagQuery) { q.WithOrderTags() })
			}},
		{name: "Tag/WithOrderTags(victim-only)", want: map[string]string{a.tag.String(): ""},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return tagsWith(ctx, c, p, func(q *ent.TagQuery) {
					q.WithOrderTags(func(q *ent.OrderTagQuery) { q.Where(ordertag.OrderID(v.order)) })
				})
			}},
		{name: "OrderTag/WithOrder+WithTag", want: map[string]string{otKey(a.order, a.tag): o + "|" + a.tag.String()},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return orderTagsWith(ctx, c, p, nil, nil)
			}},
		{name: "OrderTag/WithOrder+WithTag(victim-only)", want: map[string]string{otKey(a.order, a.tag): "|"},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return orderTagsWith(ctx, c, p,
					func(q *ent.OrderQuery) { q.Where(order.ID(v.order)) },
					func(q *ent.TagQuery) { q.Where(tag.ID(v.tag)) })
			}},
	}
	return cells
}

func customersWithOrders(ctx context.Context, c *ent.Client, p *leakPair, opt func(*ent.OrderQuery)) (any, error) {
	q := c.Customer.Query().Where(customer.IDIn(p.a.customer, p.v.customer))
	if opt != nil {
		q = q.WithOrders(opt)
	} else {
		q = q.WithOrders()
	}
	ns, err := q.All(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, n := range ns {
		var ks []string
		for _, x := range n.Edges.Orders {
			ks = append(ks, keyOf(x.ID.String(), x.TenantID, p.a.id))
		}
		m[keyOf(n.ID.String(), n.TenantID, p.a.id)] = joinSorted(ks)
	}
	return m, nil
}

func lineItemsWithOrder(ctx context.Context, c *ent.Client, p *leakPair, opt func(*ent.OrderQuery)) (any, error) {
	q := c.LineItem.Query().Where(lineitem.IDIn(append(p.a.lineItems[:], p.v.lineItems[:]...)...))
	if opt != nil {
		q = q.WithOrder(opt)
	} else {
		q = q.WithOrder()
	}
	ns, err := q.All(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, n := range ns {
		s := ""
		if o := n.Edges.Order; o != nil {
			s = keyOf(o.ID.String(), o.TenantID, p.a.id)
		}
		m[keyOf(n.ID.String(), n.TenantID, p.a.id)] = s
	}
	return m, nil
}

func tagsWith(ctx context.Context, c *ent.Client, p *leakPair, with func(*ent.TagQuery)) (any, error) {
	q := c.Tag.Query().Where(tag.IDIn(p.a.tag, p.v.tag))
	with(q)
	ns, err := q.All(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, n := range ns {
		var ks []string
		for _, x := range n.Edges.Orders {
			ks = append(ks, keyOf(x.ID.String(), x.TenantID, p.a.id))
		}
		for _, x := range n.Edges.OrderTags {
			ks = append(ks, keyOf(otKey(x.OrderID, x.TagID), x.TenantID, p.a.id))
		}
		m[keyOf(n.ID.String(), n.TenantID, p.a.id)] = joinSorted(ks)
	}
	return m, nil
}

func orderTagsWith(ctx context.Context, c *ent.Client, p *leakPair, oopt func(*ent.OrderQuery), topt func(*ent.TagQuery)) (any, error) {
	q := c.OrderTag.Query().Where(ordertag.OrderIDIn(p.a.order, p.v.order))
	if oopt != nil {
		q = q.WithOrder(oopt).WithTag(topt)
	} else {
		q = q.WithOrder().WithTag()
	}
	ns, err := q.All(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, n := range ns {
		var o, tg string
		if x := n.Edges.Order; x != nil {
			o = keyOf(x.ID.String(), x.TenantID, p.a.id)
		}
		if x := n.Edges.Tag; x != nil {
			tg = keyOf(x.ID.String(), x.TenantID, p.a.id)
		}
		m[keyOf(otKey(n.OrderID, n.TagID), n.TenantID, p.a.id)] = o + "|" + tg
	}
	return m, nil
}

// leakTraversal is a graph traversal from one tenant's rows: through the
// query builder (Query().Where(id).QueryX()) and, where the client has one,
// through the client's QueryX(entity) on the entity loaded by its owner (an
// attacker holding a victim's entity, e.g. from a cache).
type leakTraversal struct {
	name  string
	query func(ctx context.Context, c *ent.Client, from *leakTenant) ([]leakRow, error)
	stub  func(ctx context.Context, c *ent.Client, from *leakTenant) ([]leakRow, error)
	want  func(lt *leakTenant) []string
}

func leakTraversalCells(env *apptest.Env, p *leakPair) []leakGraphCell {
	custRow := func(n *ent.Customer) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	orderRow := func(n *ent.Order) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	liRow := func(n *ent.LineItem) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	tagRow := func(n *ent.Tag) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	otRow := func(n *ent.OrderTag) leakRow { return leakRow{otKey(n.OrderID, n.TagID), n.TenantID} }
	ot := func(lt *leakTenant) *ent.OrderTag { return &ent.OrderTag{OrderID: lt.order, TagID: lt.tag} }
	otWhere := func(c *ent.Client, lt *leakTenant) *ent.OrderTagQuery {
		return c.OrderTag.Query().Where(ordertag.OrderID(lt.order), ordertag.TagID(lt.tag))
	}

	trs := []leakTraversal{
		{name: "Customer/QueryOrders",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Customer.Query().Where(customer.ID(lt.customer)).QueryOrders().All(ctx))(orderRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Customer.QueryOrders(env.Client.Customer.GetX(lt.ctx, lt.customer)).All(ctx))(orderRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.order.String()} }},
		{name: "Order/QueryCustomer",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.Query().Where(order.ID(lt.order)).QueryCustomer().All(ctx))(custRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.QueryCustomer(env.Client.Order.GetX(lt.ctx, lt.order)).All(ctx))(custRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.customer.String()} }},
		{name: "Order/QueryLineItems",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.Query().Where(order.ID(lt.order)).QueryLineItems().All(ctx))(liRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.QueryLineItems(env.Client.Order.GetX(lt.ctx, lt.order)).All(ctx))(liRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.lineItems[0].String(), lt.lineItems[1].String()} }},
		{name: "Order/QueryTags",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.Query().Where(order.ID(lt.order)).QueryTags().All(ctx))(tagRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.QueryTags(env.Client.Order.GetX(lt.ctx, lt.order)).All(ctx))(tagRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.tag.String()} }},
		{name: "Order/QueryOrderTags",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.Query().Where(order.ID(lt.order)).QueryOrderTags().All(ctx))(otRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Order.QueryOrderTags(env.Client.Order.GetX(lt.ctx, lt.order)).All(ctx))(otRow)
			},
			want: func(lt *leakTenant) []string { return []string{otKey(lt.order, lt.tag)} }},
		{name: "LineItem/QueryOrder",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.LineItem.Query().Where(lineitem.ID(lt.lineItems[0])).QueryOrder().All(ctx))(orderRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.LineItem.QueryOrder(env.Client.LineItem.GetX(lt.ctx, lt.lineItems[0])).All(ctx))(orderRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.order.String()} }},
		{name: "Tag/QueryOrders",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Tag.Query().Where(tag.ID(lt.tag)).QueryOrders().All(ctx))(orderRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Tag.QueryOrders(env.Client.Tag.GetX(lt.ctx, lt.tag)).All(ctx))(orderRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.order.String()} }},
		{name: "Tag/QueryOrderTags",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Tag.Query().Where(tag.ID(lt.tag)).QueryOrderTags().All(ctx))(otRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Tag.QueryOrderTags(env.Client.Tag.GetX(lt.ctx, lt.tag)).All(ctx))(otRow)
			},
			want: func(lt *leakTenant) []string { return []string{otKey(lt.order, lt.tag)} }},
		{name: "OrderTag/QueryOrder",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(otWhere(c, lt).QueryOrder().All(ctx))(orderRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.OrderTag.QueryOrder(ot(lt)).All(ctx))(orderRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.order.String()} }},
		{name: "OrderTag/QueryTag",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(otWhere(c, lt).QueryTag().All(ctx))(tagRow)
			},
			stub: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.OrderTag.QueryTag(ot(lt)).All(ctx))(tagRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.tag.String()} }},
		{name: "Customer/QueryOrders.QueryTags",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Customer.Query().Where(customer.ID(lt.customer)).QueryOrders().QueryTags().All(ctx))(tagRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.tag.String()} }},
		{name: "Tag/QueryOrders.QueryCustomer",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.Tag.Query().Where(tag.ID(lt.tag)).QueryOrders().QueryCustomer().All(ctx))(custRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.customer.String()} }},
		{name: "LineItem/QueryOrder.QueryCustomer.QueryOrders.QueryLineItems",
			query: func(ctx context.Context, c *ent.Client, lt *leakTenant) ([]leakRow, error) {
				return allOf(c.LineItem.Query().Where(lineitem.ID(lt.lineItems[0])).
					QueryOrder().QueryCustomer().QueryOrders().QueryLineItems().All(ctx))(liRow)
			},
			want: func(lt *leakTenant) []string { return []string{lt.lineItems[0].String(), lt.lineItems[1].String()} }},
	}

	var cells []leakGraphCell
	for _, tr := range trs {
		for _, from := range []struct {
			name string
			lt   *leakTenant
			want []string
		}{
			{"own", p.a, sorted(tr.want(p.a))},
			{"victim", p.v, []string{}},
		} {
			cells = append(cells, leakGraphCell{
				name: tr.name + "(" + from.name + ")",
				want: from.want,
				run: func(ctx context.Context, c *ent.Client) (any, error) {
					rows, err := tr.query(ctx, c, from.lt)
					return norm(rows, p.a.id), err
				},
			})
			if tr.stub != nil {
				cells = append(cells, leakGraphCell{
					name: tr.name + "(" + from.name + "-stub)",
					want: from.want,
					run: func(ctx context.Context, c *ent.Client) (any, error) {
						rows, err := tr.stub(ctx, c, from.lt)
						return norm(rows, p.a.id), err
					},
				})
			}
		}
	}
	return cells
}

// allOf adapts a query result to rows: allOf(q.All(ctx))(f).
func allOf[T any](ns []T, err error) func(func(T) leakRow) ([]leakRow, error) {
	return func(f func(T) leakRow) ([]leakRow, error) {
		if err != nil {
			return nil, err
		}
		return rowsOf(ns, f), nil
	}
}

func leakHasCells(p *leakPair) []leakGraphCell {
	a, v := p.a, p.v
	orderRow := func(n *ent.Order) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	custRow := func(n *ent.Customer) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	liRow := func(n *ent.LineItem) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	tagRow := func(n *ent.Tag) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	otRow := func(n *ent.OrderTag) leakRow { return leakRow{otKey(n.OrderID, n.TagID), n.TenantID} }
	cell := func(name string, want []string, run func(ctx context.Context, c *ent.Client) ([]leakRow, error)) leakGraphCell {
		return leakGraphCell{name: name, want: sorted(want), run: func(ctx context.Context, c *ent.Client) (any, error) {
			rows, err := run(ctx, c)
			return norm(rows, a.id), err
		}}
	}
	none := []string{}
	return []leakGraphCell{
		cell("Order/HasCustomerWith(own)", []string{a.order.String()}, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasCustomerWith(customer.ID(a.customer))).All(ctx))(orderRow)
		}),
		cell("Order/HasCustomerWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasCustomerWith(customer.ID(v.customer))).All(ctx))(orderRow)
		}),
		cell("Order/HasCustomerWith(victim-email)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasCustomerWith(customer.EmailEQ(v.email))).All(ctx))(orderRow)
		}),
		cell("Order/HasLineItemsWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasLineItemsWith(lineitem.IDIn(v.lineItems[:]...))).All(ctx))(orderRow)
		}),
		cell("Order/HasTagsWith(own)", []string{a.order.String()}, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasTagsWith(tag.ID(a.tag))).All(ctx))(orderRow)
		}),
		cell("Order/HasTagsWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasTagsWith(tag.ID(v.tag))).All(ctx))(orderRow)
		}),
		cell("Order/HasTagsWith(victim-name)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasTagsWith(tag.NameEQ(v.tagName))).All(ctx))(orderRow)
		}),
		cell("Order/HasOrderTagsWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.HasOrderTagsWith(ordertag.TagID(v.tag))).All(ctx))(orderRow)
		}),
		cell("Order/Or(ID(victim),HasCustomerWith(victim))", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Order.Query().Where(order.Or(order.ID(v.order), order.HasCustomerWith(customer.ID(v.customer)))).All(ctx))(orderRow)
		}),
		cell("Customer/HasOrdersWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Customer.Query().Where(customer.HasOrdersWith(order.ID(v.order))).All(ctx))(custRow)
		}),
		cell("Customer/HasOrdersWith(victim-number)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Customer.Query().Where(customer.HasOrdersWith(order.NumberEQ(v.number))).All(ctx))(custRow)
		}),
		cell("Customer/Not(HasOrdersWith(victim))", []string{a.customer.String()}, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Customer.Query().Where(customer.IDIn(a.customer, v.customer), customer.Not(customer.HasOrdersWith(order.ID(v.order)))).All(ctx))(custRow)
		}),
		cell("LineItem/HasOrderWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.LineItem.Query().Where(lineitem.HasOrderWith(order.ID(v.order))).All(ctx))(liRow)
		}),
		cell("Tag/HasOrdersWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Tag.Query().Where(tag.HasOrdersWith(order.ID(v.order))).All(ctx))(tagRow)
		}),
		cell("Tag/HasOrderTagsWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.Tag.Query().Where(tag.HasOrderTagsWith(ordertag.OrderID(v.order))).All(ctx))(tagRow)
		}),
		cell("OrderTag/HasOrderWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.OrderTag.Query().Where(ordertag.HasOrderWith(order.ID(v.order))).All(ctx))(otRow)
		}),
		cell("OrderTag/HasTagWith(victim)", none, func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			return allOf(c.OrderTag.Query().Where(ordertag.HasTagWith(tag.ID(v.tag))).All(ctx))(otRow)
		}),
	}
}

// rawStrings runs raw SQL through the client and returns every row as
// strings (cast in SQL).
func rawStrings(ctx context.Context, c *ent.Client, query string, args ...any) ([][]string, error) {
	rows, err := c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := [][]string{}
	for rows.Next() {
		vals := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, rows.Close()
}

// adminCount counts rows as admin in the tenant's schema.
func adminCount(t *testing.T, lt *leakTenant, table, where string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, lt.admin.QueryRow(context.Background(),
		`SELECT count(*) FROM `+quoteIdent(lt.schema)+`.`+table+` WHERE `+where, args...).Scan(&n))
	return n
}

func leakRawReadCells(p *leakPair) []leakGraphCell {
	a, v := p.a, p.v
	// summary describes (id, tenant) rows against the seeds.
	summary := func(rows [][]string, entity string) string {
		seen := map[string]bool{}
		foreign := []string{}
		for _, r := range rows {
			seen[r[0]] = true
			if r[1] != a.id.String() {
				foreign = append(foreign, r[0]+"@tenant:"+r[1])
			}
		}
		missing, victims := []string{}, []string{}
		for _, k := range a.keys(entity) {
			if !seen[k] {
				missing = append(missing, k)
			}
		}
		for _, k := range v.keys(entity) {
			if seen[k] {
				victims = append(victims, k)
			}
		}
		return fmt.Sprintf("foreign=%v missing=%v victim=%v", foreign, missing, victims)
	}
	clean := "foreign=[] missing=[] victim=[]"
	cells := []leakGraphCell{
		{name: "Raw/SELECT id FROM orders", want: clean,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				rows, err := rawStrings(ctx, c, `SELECT id::text, tenant_id::text FROM orders`)
				return summary(rows, entOrder), err
			}},
		{name: "Raw/SELECT id FROM order_tags", want: "foreign=[]",
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				rows, err := rawStrings(ctx, c, `SELECT order_id::text, tenant_id::text FROM order_tags`)
				foreign := []string{}
				for _, r := range rows {
					if r[1] != a.id.String() || r[0] == v.order.String() {
						foreign = append(foreign, r[0]+"@tenant:"+r[1])
					}
				}
				return fmt.Sprintf("foreign=%v", foreign), err
			}},
		{name: "Raw/SELECT victim ids", want: [][]string{},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawStrings(ctx, c, `SELECT 'customer', id::text FROM customers WHERE id = $1::uuid
					UNION ALL SELECT 'order', id::text FROM orders WHERE id = ANY($2::uuid[])
					UNION ALL SELECT 'line_item', id::text FROM line_items WHERE order_id = $3::uuid
					UNION ALL SELECT 'tag', id::text FROM tags WHERE id = $4::uuid
					UNION ALL SELECT 'order_tag', order_id::text FROM order_tags WHERE tag_id = $4::uuid
					UNION ALL SELECT 'by tenant', id::text FROM orders WHERE tenant_id = $5::uuid`,
					v.customer.String(), []string{v.order.String(), v.orphan.String()}, v.order.String(), v.tag.String(), v.id.String())
			}},
		{name: "Raw/SELECT tenant_id, count(*) GROUP BY tenant_id", want: [][]string{{a.id.String()}},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawStrings(ctx, c, `SELECT DISTINCT tenant_id::text FROM (
					SELECT tenant_id FROM customers UNION ALL SELECT tenant_id FROM orders
					UNION ALL SELECT tenant_id FROM line_items UNION ALL SELECT tenant_id FROM tags
					UNION ALL SELECT tenant_id FROM order_tags) t`)
			}},
		{name: "Raw/current settings", want: [][]string{{quoteIdent(a.schema), a.id.String()}},
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawStrings(ctx, c, `SELECT current_setting('search_path'), current_setting('app.current_tenant_id')`)
			}},
		{
			// Raw SQL can set the tenant setting that row-level security
			// reads, in the statement itself. In a shared schema nothing
			// else separates the tenants on this path (no Go filter on raw
			// SQL). tenancy.CheckRawSQL refuses this spelling.
			name: "Raw/set_config(app.current_tenant_id=victim) in the statement", want: "victim rows=[]",
			refusal: tenancy.ErrRawSQLRefused,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				rows, err := rawStrings(ctx, c, `WITH s AS MATERIALIZED (SELECT set_config('app.current_tenant_id', $1, true) AS v)
					SELECT o.id::text, o.tenant_id::text FROM s, orders o`, v.id.String())
				return victimRows(rows, p), err
			},
		},
		{
			// The same in two statements; inside a transaction the setting
			// outlives the first statement.
			name: "Raw/set_config(app.current_tenant_id=victim) then SELECT", want: "victim rows=[]",
			refusal: tenancy.ErrRawSQLRefused,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				if _, err := c.ExecContext(ctx, `SELECT set_config('app.current_tenant_id', $1, true)`, v.id.String()); err != nil {
					return nil, err
				}
				rows, err := rawStrings(ctx, c, `SELECT id::text, tenant_id::text FROM orders`)
				return victimRows(rows, p), err
			},
		},
		{
			// A SET hidden behind nested block comments; in the matrix's
			// transaction modes the setting outlives the statement.
			// PostgreSQL's comments nest; CheckRawSQL must read them so.
			name: "Raw/SET LOCAL app.current_tenant_id=victim behind nested comments, then SELECT", want: "victim rows=[]",
			refusal: tenancy.ErrRawSQLRefused,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				if _, err := c.ExecContext(ctx, `/* /* */ select */ SET LOCAL app.current_tenant_id = '`+v.id.String()+`'`); err != nil {
					return nil, err
				}
				rows, err := rawStrings(ctx, c, `SELECT id::text, tenant_id::text FROM orders`)
				return victimRows(rows, p), err
			},
		},
		{
			// The same set_config, run by ts_rewrite(tsquery, text), which
			// executes the SQL text of its second argument, here a bind
			// parameter: CheckRawSQL reads the statement, not its arguments.
			name: "Raw/ts_rewrite($1=set_config(victim)) in the statement", want: "victim rows=[]",
			refusal: tenancy.ErrRawSQLRefused,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				rows, err := rawStrings(ctx, c, `WITH s AS MATERIALIZED (SELECT ts_rewrite('a'::tsquery, $1) AS v)
					SELECT o.id::text, o.tenant_id::text FROM s, orders o`, setTenantSQL(v.id))
				return victimRows(rows, p), err
			},
		},
		{
			name: "Raw/ts_rewrite($1=set_config(victim)) then SELECT", want: "victim rows=[]",
			refusal: tenancy.ErrRawSQLRefused,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				if _, err := c.ExecContext(ctx, `SELECT ts_rewrite('a'::tsquery, $1)`, setTenantSQL(v.id)); err != nil {
					return nil, err
				}
				rows, err := rawStrings(ctx, c, `SELECT id::text, tenant_id::text FROM orders`)
				return victimRows(rows, p), err
			},
		},
		{
			// Naming the victim's schema: the same schema in shared mode
			// (row-level security filters), a schema that is not on the
			// attacker's shard otherwise (an error).
			name: "Raw/SELECT FROM victim-schema.orders", want: clean, anyErr: !p.sameSite,
			run: func(ctx context.Context, c *ent.Client) (any, error) {
				rows, err := rawStrings(ctx, c, `SELECT id::text, tenant_id::text FROM `+quoteIdent(v.schema)+`.orders`)
				return summary(rows, entOrder), err
			},
		},
	}
	return cells
}

// setTenantSQL is a query for ts_rewrite that rebinds the transaction to
// tenant id (ts_rewrite wants two tsquery columns back).
func setTenantSQL(id tenancy.ID) string {
	return `SELECT 'a'::tsquery, 'a'::tsquery FROM (SELECT set_config('app.current_tenant_id', '` + id.String() + `', true)) s`
}

// victimRows lists (id, tenant) rows that belong to the victim or carry
// the id of one of its seeded orders.
func victimRows(rows [][]string, p *leakPair) string {
	out := []string{}
	for _, r := range rows {
		if r[1] == p.v.id.String() || slices.Contains(p.v.keys(entOrder), r[0]) {
			out = append(out, r[0]+"@tenant:"+r[1])
		}
	}
	return fmt.Sprintf("victim rows=%v", out)
}

// ---------------------------------------------------------------- writes

// leakWrite is one write cell, built anew for each scope (so that created
// ids differ) before the ground truth is snapshotted.
type leakWrite struct {
	op func(ctx context.Context, c *ent.Client) (any, error)
	// check judges the outcome in the scopes that carry the attacker
	// (attacker, tx). The runner checks the rest: the victim's rows are
	// unchanged, no row of another tenant references the victim, failed
	// writes left the attacker's rows unchanged.
	check func(t *testing.T, res any, err error)
	// created are rows the op writes if it works: they must then be the
	// attacker's, in its schema; if it fails they must not exist.
	created []leakRef
	// noChange: the attacker's rows must not change even if op works.
	noChange bool
	cleanup  func(t *testing.T)
	// isolate runs the op of the scopes without a transaction of ours on a
	// private client: it is known to panic inside a transaction Ent opened
	// itself, which leaks that connection (see leakPrivate).
	isolate bool
}

type leakRef struct{ entity, key string }

type leakWriteCell struct {
	name  string
	build func(t *testing.T) leakWrite
}

func runLeakWrites(t *testing.T, env *apptest.Env, p *leakPair, cells []leakWriteCell) int {
	n := 0
	for _, wc := range cells {
		t.Run(wc.name, func(t *testing.T) {
			for _, s := range leakScopes {
				n++
				t.Run(s.name, func(t *testing.T) {
					w := wc.build(t)
					if w.cleanup != nil {
						t.Cleanup(func() { w.cleanup(t) })
					}
					beforeA, beforeV := leakSnapshot(t, p.a), leakSnapshot(t, p.v)
					ctx, c, end := s.open(t, env, p)
					if w.isolate && !s.tx {
						c = p.private.client
					}
					res, err := safely(func() (any, error) { return w.op(ctx, c) })
					if errors.Is(err, errLeakPanic) && w.isolate && !s.tx {
						p.private.panicked = true
					}
					if cerr := end(err); err == nil && cerr != nil {
						err = fmt.Errorf("commit: %w", cerr)
					}
					require.NotErrorIs(t, err, errLeakPanic)
					if s.wantErr != nil {
						require.ErrorIs(t, err, s.wantErr)
					} else if w.check != nil {
						w.check(t, res, err)
					}
					requireSameSnapshot(t, "victim "+p.v.label, beforeV, leakSnapshot(t, p.v))
					if err != nil || w.noChange {
						requireSameSnapshot(t, "attacker "+p.a.label, beforeA, leakSnapshot(t, p.a))
					}
					for _, r := range w.created {
						locs := locateLeakRow(t, env, r.entity, r.key)
						if err != nil {
							require.Empty(t, locs, "%s %s was written although the write failed", r.entity, r.key)
						} else {
							require.Equal(t, []leakLocation{{p.a.shard, p.a.schema, p.a.id}}, locs, "%s %s", r.entity, r.key)
						}
					}
					requireNoCrossRefs(t, env, p)
				})
			}
		})
	}
	return n
}

func wantNoError(t *testing.T, _ any, err error) { require.NoError(t, err) }

func wantErrorIs(target error) func(t *testing.T, _ any, err error) {
	return func(t *testing.T, _ any, err error) { require.ErrorIs(t, err, target) }
}

func wantNotFound(t *testing.T, _ any, err error) {
	require.Error(t, err)
	require.True(t, ent.IsNotFound(err), "want NotFound, got %v", err)
}

func wantAffected(n int) func(t *testing.T, res any, err error) {
	return func(t *testing.T, res any, err error) {
		require.NoError(t, err)
		require.Equal(t, n, res)
	}
}

// wantErrOrNothing accepts a refusal or a write that changed nothing (the
// runner compares the snapshots).
func wantErrOrNothing(t *testing.T, _ any, err error) {
	if err != nil {
		t.Logf("refused: %v", err)
	}
}

func wantError(t *testing.T, _ any, err error) { require.Error(t, err) }

func leakEntityWriteCells(env *apptest.Env, p *leakPair, ents map[string]*leakEntity) []leakWriteCell {
	a, v := p.a, p.v
	var cells []leakWriteCell
	for _, name := range leakEntityNames {
		e := ents[name]
		vKeys := v.keys(name)
		add := func(shape string, build func(t *testing.T) leakWrite) {
			cells = append(cells, leakWriteCell{name: name + "/" + shape, build: build})
		}
		refs := func(keys ...string) []leakRef {
			var rs []leakRef
			for _, k := range keys {
				rs = append(rs, leakRef{name, k})
			}
			return rs
		}
		victimTenant, attackerTenant := v.id, a.id

		create := func(tenant *tenancy.ID, check func(*testing.T, any, error)) func(t *testing.T) leakWrite {
			return func(t *testing.T) leakWrite {
				key := e.newKey(t, a)
				return leakWrite{
					op: func(ctx context.Context, c *ent.Client) (any, error) {
						return nil, e.newCreate(c, a, key, tenant)(ctx)
					},
					check:   check,
					created: refs(key),
				}
			}
		}
		bulk := func(tenant *tenancy.ID, check func(*testing.T, any, error)) func(t *testing.T) leakWrite {
			return func(t *testing.T) leakWrite {
				keys := [2]string{e.newKey(t, a), e.newKey(t, a)}
				return leakWrite{
					op: func(ctx context.Context, c *ent.Client) (any, error) {
						return nil, e.createBulk(c, a, keys, tenant)(ctx)
					},
					check:   check,
					created: refs(keys[:]...),
				}
			}
		}
		add("Create", create(nil, wantNoError))
		add("CreateBulk", bulk(nil, wantNoError))
		add("Create/SetTenantID(own)", create(&attackerTenant, wantNoError))
		add("Create/SetTenantID(victim)", create(&victimTenant, wantErrorIs(tenancy.ErrTenantMismatch)))
		add("CreateBulk/SetTenantID(victim)", bulk(&victimTenant, wantErrorIs(tenancy.ErrTenantMismatch)))
		add("Upsert/SetTenantID(victim)", func(t *testing.T) leakWrite {
			key := e.newKey(t, a)
			return leakWrite{
				op: func(ctx context.Context, c *ent.Client) (any, error) {
					return nil, e.upsert(t, c, a, key, &victimTenant, upsertNewValues)(ctx)
				},
				check:   wantErrorIs(tenancy.ErrTenantMismatch),
				created: refs(key),
			}
		})
		for _, mode := range upsertModes {
			add("Upsert/VictimID/"+string(mode), func(t *testing.T) leakWrite {
				key := vKeys[0]
				return leakWrite{
					op: func(ctx context.Context, c *ent.Client) (any, error) {
						return nil, e.upsert(t, c, a, key, nil, mode)(ctx)
					},
					check: func(t *testing.T, _ any, err error) {
						// Refused, or (own schemas only) a separate row of
						// the attacker that happens to carry the same id.
						locs := locateLeakRow(t, env, name, key)
						require.Contains(t, locs, leakLocation{v.shard, v.schema, v.id})
						for _, l := range locs {
							if l.tenant != v.id {
								require.False(t, p.sameSite, "upsert wrote a row of %s next to the victim's", l.tenant)
								require.Equal(t, leakLocation{a.shard, a.schema, a.id}, l)
							}
						}
						if err != nil {
							t.Logf("refused: %v", err)
						}
					},
					noChange: p.sameSite,
					cleanup:  func(t *testing.T) { adminDeleteOwn(t, a, name, key) },
				}
			})
		}
		add("Update(victim-ids)", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return e.update(ctx, c, a, vKeys)
			}, check: wantAffected(0), noChange: true}
		})
		add("Update(own+victim-ids)", func(t *testing.T) leakWrite {
			keys := append(a.keys(name), vKeys...)
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return e.update(ctx, c, a, keys)
			}, check: wantAffected(len(a.keys(name)))}
		})
		add("UpdateOne(victim)", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return nil, e.updateOne(ctx, c, a, vKeys[0])
			}, check: wantNotFound,
				// For the edge schema, Ent v0.14.5 panics if a predicate is
				// set and the UPDATE matches 0 rows (sqlgraph ensureExists
				// reads u.Node.ID, nil for a composite id); the mixin used
				// to add one. Isolated so that a regression fails the cell
				// without leaking a connection of the shared pool.
				isolate: name == entOrderTag}
		})
		if e.updateOneID != nil {
			add("UpdateOneID(victim)", func(t *testing.T) leakWrite {
				return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
					return nil, e.updateOneID(ctx, c, a, vKeys[0])
				}, check: wantNotFound}
			})
		}
		add("Delete(victim-ids)", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return e.del(ctx, c, vKeys)
			}, check: wantAffected(0), noChange: true}
		})
		add("Delete(fresh-own+victim-ids)", func(t *testing.T) leakWrite {
			fresh := e.newKey(t, a)
			require.NoError(t, e.newCreate(env.Client, a, fresh, nil)(a.ctx))
			return leakWrite{
				op: func(ctx context.Context, c *ent.Client) (any, error) {
					return e.del(ctx, c, append([]string{fresh}, vKeys...))
				},
				check: func(t *testing.T, res any, err error) {
					require.NoError(t, err)
					require.Equal(t, 1, res)
					require.Empty(t, locateLeakRow(t, env, name, fresh))
				},
			}
		})
		if e.deleteOne != nil {
			add("DeleteOne(victim)", func(t *testing.T) leakWrite {
				return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
					return nil, e.deleteOne(ctx, c, vKeys[0])
				}, check: wantNotFound}
			})
		}
		if e.deleteOneID != nil {
			add("DeleteOneID(victim)", func(t *testing.T) leakWrite {
				return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
					return nil, e.deleteOneID(ctx, c, vKeys[0])
				}, check: wantNotFound}
			})
		}
	}
	// A bulk upsert whose second row carries the victim's order id.
	cells = append(cells, leakWriteCell{name: "Order/UpsertBulk/VictimID/UpdateNewValues", build: func(t *testing.T) leakWrite {
		own := uuid.New()
		return leakWrite{
			op: func(ctx context.Context, c *ent.Client) (any, error) {
				return nil, c.Order.CreateBulk(
					c.Order.Create().SetID(own).SetNumber("UB-"+short()),
					c.Order.Create().SetID(v.order).SetNumber("UB-"+short()).SetNote("pwned"),
				).OnConflictColumns(order.FieldID).UpdateNewValues().Exec(ctx)
			},
			check: func(t *testing.T, _ any, err error) {
				if p.sameSite {
					require.Error(t, err)
				}
			},
			noChange: p.sameSite,
			cleanup: func(t *testing.T) {
				adminDeleteOwn(t, a, entOrder, v.order.String())
				adminDeleteOwn(t, a, entOrder, own.String())
			},
		}
	}})
	return cells
}

// adminDeleteOwn removes, as admin, a row the attacker wrote with a key of
// the victim (possible only where their schemas differ).
func adminDeleteOwn(t *testing.T, a *leakTenant, entity, key string) {
	t.Helper()
	where, args := "id = $1::uuid", []any{key}
	if entity == entOrderTag {
		o, tg := parseOTKey(t, key)
		where, args = "order_id = $1::uuid AND tag_id = $2::uuid", []any{o.String(), tg.String()}
	}
	args = append(args, a.id.String())
	_, err := a.admin.Exec(context.Background(),
		`DELETE FROM `+quoteIdent(a.schema)+`.`+leakTable[entity]+` WHERE `+where+fmt.Sprintf(` AND tenant_id = $%d::uuid`, len(args)), args...)
	require.NoError(t, err)
}

// leakLinkCells try to connect the attacker's rows to the victim's, through
// every way Ent adds edges (SetXID, AddXIDs on O2M and M2M, edge-schema
// creates, the required M2O of line items) and edge-only updates of the
// victim's rows, which Ent runs without the mutation's predicates.
func leakLinkCells(env *apptest.Env, p *leakPair) []leakWriteCell {
	a, v := p.a, p.v
	op := func(f func(ctx context.Context, c *ent.Client) error) func(ctx context.Context, c *ent.Client) (any, error) {
		return func(ctx context.Context, c *ent.Client) (any, error) { return nil, f(ctx, c) }
	}
	opN := func(f func(ctx context.Context, c *ent.Client) (int, error)) func(ctx context.Context, c *ent.Client) (any, error) {
		return func(ctx context.Context, c *ent.Client) (any, error) { return f(ctx, c) }
	}
	// noop: the write must fail or leave everything as it was.
	noop := func(f func(ctx context.Context, c *ent.Client) error) func(t *testing.T) leakWrite {
		return func(*testing.T) leakWrite { return leakWrite{op: op(f), check: wantErrOrNothing, noChange: true} }
	}
	// refused: the write must fail and leave everything as it was.
	refused := func(f func(ctx context.Context, c *ent.Client) error) func(t *testing.T) leakWrite {
		return func(*testing.T) leakWrite { return leakWrite{op: op(f), check: wantError, noChange: true} }
	}
	zero := func(f func(ctx context.Context, c *ent.Client) (int, error)) func(t *testing.T) leakWrite {
		return func(*testing.T) leakWrite { return leakWrite{op: opN(f), check: wantAffected(0), noChange: true} }
	}
	return []leakWriteCell{
		{"Order/UpdateOneID(own).SetCustomerID(victim)", refused(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(a.order).SetCustomerID(v.customer).Exec(ctx)
		})},
		{"Order/UpdateOneID(own-orphan).SetCustomerID(victim)", refused(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(a.orphan).SetCustomerID(v.customer).Exec(ctx)
		})},
		{"Order/Create.SetCustomerID(victim)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.Order.Create().SetID(id).SetNumber("X-" + short()).SetCustomerID(v.customer).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrder, id.String()}}}
		}},
		{"Customer/UpdateOneID(own).AddOrderIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(a.customer).AddOrderIDs(v.order).Exec(ctx)
		})},
		{"Customer/UpdateOneID(own).AddOrderIDs(victim-orphan)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(a.customer).AddOrderIDs(v.orphan).Exec(ctx)
		})},
		{"Customer/Update(own).AddOrderIDs(victim-orphan)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.Update().Where(customer.ID(a.customer)).AddOrderIDs(v.orphan).Exec(ctx)
		})},
		{"Customer/Create.AddOrderIDs(victim-orphan)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.Customer.Create().SetID(id).SetName("x").SetEmail(short() + "@x.test").AddOrderIDs(v.orphan).Exec(ctx)
			}), check: wantError, created: []leakRef{{entCustomer, id.String()}}}
		}},
		{"Order/UpdateOneID(own).AddTagIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(a.order).AddTagIDs(v.tag).Exec(ctx)
		})},
		{"Order/Update(own).AddTagIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.Update().Where(order.ID(a.orphan)).AddTagIDs(v.tag).Exec(ctx)
		})},
		{"Order/Create.AddTagIDs(victim)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.Order.Create().SetID(id).SetNumber("X-" + short()).AddTagIDs(v.tag).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrder, id.String()}}}
		}},
		{"Order/UpdateOneID(own).AddLineItemIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(a.orphan).AddLineItemIDs(v.lineItems[0]).Exec(ctx)
		})},
		{"Tag/UpdateOneID(own).AddOrderIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Tag.UpdateOneID(a.tag).AddOrderIDs(v.order, v.orphan).Exec(ctx)
		})},
		{"Tag/Create.AddOrderIDs(victim)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.Tag.Create().SetID(id).SetName("x-" + short()).AddOrderIDs(v.order).Exec(ctx)
			}), check: wantError, created: []leakRef{{entTag, id.String()}}}
		}},
		{"OrderTag/Create(victim-order,own-tag)", func(t *testing.T) leakWrite {
			tg := a.spareTag(t)
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.OrderTag.Create().SetOrderID(v.order).SetTagID(tg).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrderTag, otKey(v.order, tg)}}}
		}},
		{"OrderTag/Create(own-order,victim-tag)", func(t *testing.T) leakWrite {
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.OrderTag.Create().SetOrderID(a.orphan).SetTagID(v.tag).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrderTag, otKey(a.orphan, v.tag)}}}
		}},
		{"OrderTag/Create(victim-order,victim-tag)", func(t *testing.T) leakWrite {
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.OrderTag.Create().SetOrderID(v.orphan).SetTagID(v.tag).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrderTag, otKey(v.orphan, v.tag)}}}
		}},
		{"OrderTag/CreateBulk(own,victim-order)", func(t *testing.T) leakWrite {
			t1, t2 := a.spareTag(t), a.spareTag(t)
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.OrderTag.CreateBulk(
					c.OrderTag.Create().SetOrderID(a.orphan).SetTagID(t1),
					c.OrderTag.Create().SetOrderID(v.orphan).SetTagID(t2),
				).Exec(ctx)
			}), check: wantError, created: []leakRef{{entOrderTag, otKey(a.orphan, t1)}, {entOrderTag, otKey(v.orphan, t2)}}}
		}},
		// Ent's UpdateOne of the edge schema looks the row up by the new
		// order_id and finds none: the ensureExists panic of
		// OrderTag/UpdateOne(victim) if a predicate is set; isolated for
		// the same reason.
		{"OrderTag/UpdateOne(own).SetOrderID(victim)", func(t *testing.T) leakWrite {
			w := refused(func(ctx context.Context, c *ent.Client) error {
				return c.OrderTag.UpdateOne(&ent.OrderTag{OrderID: a.order, TagID: a.tag}).SetOrderID(v.order).Exec(ctx)
			})(t)
			w.isolate = true
			return w
		}},
		{"OrderTag/Update(own).SetTagID(victim)", refused(func(ctx context.Context, c *ent.Client) error {
			return c.OrderTag.Update().Where(ordertag.OrderID(a.order)).SetTagID(v.tag).Exec(ctx)
		})},
		{"LineItem/Create.SetOrderID(victim)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: op(func(ctx context.Context, c *ent.Client) error {
				return c.LineItem.Create().SetID(id).SetSku("x").SetQuantity(1).SetUnitPriceCents(1).SetOrderID(v.order).Exec(ctx)
			}), check: wantError, created: []leakRef{{entLineItem, id.String()}}}
		}},
		{"LineItem/UpdateOneID(own).SetOrderID(victim)", refused(func(ctx context.Context, c *ent.Client) error {
			return c.LineItem.UpdateOneID(a.lineItems[0]).SetOrderID(v.order).Exec(ctx)
		})},
		// Positive controls of the two shapes above on the attacker's own
		// rows: a bulk Update that changes edges must work. Ent selects the
		// matching ids first and scans them into []driver.Value, which pgx
		// cannot do for a binary uuid unless the driver's rows convert it
		// (they once did not: "cannot scan uuid (OID 2950) in binary
		// format into *driver.Value"); without these controls the link
		// cells above would pass on that error alone.
		{"Order/Update(own).AddTagIDs(own)", func(t *testing.T) leakWrite {
			fresh, tg := uuid.New(), a.spareTag(t)
			env.Client.Order.Create().SetID(fresh).SetNumber("F-" + short()).SaveX(a.ctx)
			return leakWrite{
				op: opN(func(ctx context.Context, c *ent.Client) (int, error) {
					return c.Order.Update().Where(order.ID(fresh)).AddTagIDs(tg).Save(ctx)
				}),
				check:   wantAffected(1),
				created: []leakRef{{entOrderTag, otKey(fresh, tg)}},
			}
		}},
		{"Customer/Update(own).AddOrderIDs(own)", func(t *testing.T) leakWrite {
			fresh := uuid.New()
			env.Client.Order.Create().SetID(fresh).SetNumber("F-" + short()).SaveX(a.ctx)
			return leakWrite{
				op: opN(func(ctx context.Context, c *ent.Client) (int, error) {
					return c.Customer.Update().Where(customer.ID(a.customer)).AddOrderIDs(fresh).Save(ctx)
				}),
				check: func(t *testing.T, res any, err error) {
					wantAffected(1)(t, res, err)
					require.Equal(t, 1, adminCount(t, a, "orders", "id = $1::uuid AND customer_id = $2::uuid", fresh.String(), a.customer.String()))
				},
			}
		}},
		{"Customer/UpdateOneID(own).RemoveOrderIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(a.customer).RemoveOrderIDs(v.order).Exec(ctx)
		})},
		{"Order/UpdateOneID(own).RemoveTagIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(a.order).RemoveTagIDs(v.tag).Exec(ctx)
		})},
		// Edge-only updates of the victim's rows: Ent skips the UPDATE of
		// the row itself (nothing to set), so the tenant predicate of the
		// mutation never runs; only the database stands in the way.
		{"Customer/UpdateOneID(victim).ClearOrders", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(v.customer).ClearOrders().Exec(ctx)
		})},
		{"Customer/UpdateOneID(victim).RemoveOrderIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(v.customer).RemoveOrderIDs(v.order).Exec(ctx)
		})},
		{"Customer/UpdateOneID(victim).AddOrderIDs(own-orphan)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Customer.UpdateOneID(v.customer).AddOrderIDs(a.orphan).Exec(ctx)
		})},
		{"Order/UpdateOneID(victim).ClearTags", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(v.order).ClearTags().Exec(ctx)
		})},
		{"Order/UpdateOneID(victim).RemoveTagIDs(victim)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(v.order).RemoveTagIDs(v.tag).Exec(ctx)
		})},
		{"Order/UpdateOneID(victim).AddTagIDs(own)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(v.order).AddTagIDs(a.tag).Exec(ctx)
		})},
		{"Order/UpdateOneID(victim).ClearLineItems", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Order.UpdateOneID(v.order).ClearLineItems().Exec(ctx)
		})},
		{"Tag/UpdateOneID(victim).ClearOrders", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Tag.UpdateOneID(v.tag).ClearOrders().Exec(ctx)
		})},
		{"Tag/UpdateOneID(victim).AddOrderIDs(own-orphan)", noop(func(ctx context.Context, c *ent.Client) error {
			return c.Tag.UpdateOneID(v.tag).AddOrderIDs(a.orphan).Exec(ctx)
		})},
		// Bulk updates and deletes whose predicates reach the victim.
		{"Order/Update(HasCustomerWith(victim))", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.Order.Update().Where(order.HasCustomerWith(customer.ID(v.customer))).SetNote("pwned").Save(ctx)
		})},
		{"Order/Update(victim).ClearTags", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.Order.Update().Where(order.IDIn(v.order, v.orphan)).ClearTags().Save(ctx)
		})},
		{"Tag/Update(victim).AddOrderIDs(own-orphan)", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.Tag.Update().Where(tag.ID(v.tag)).AddOrderIDs(a.orphan).Save(ctx)
		})},
		{"OrderTag/Update(victim-order).SetTagID(own)", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.OrderTag.Update().Where(ordertag.OrderID(v.order)).SetTagID(a.tag).Save(ctx)
		})},
		{"Customer/Delete(HasOrdersWith(victim))", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.Customer.Delete().Where(customer.HasOrdersWith(order.ID(v.order))).Exec(ctx)
		})},
		{"LineItem/Delete(HasOrderWith(victim))", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.LineItem.Delete().Where(lineitem.HasOrderWith(order.ID(v.order))).Exec(ctx)
		})},
		{"OrderTag/Delete(HasTagWith(victim))", zero(func(ctx context.Context, c *ent.Client) (int, error) {
			return c.OrderTag.Delete().Where(ordertag.HasTagWith(tag.ID(v.tag))).Exec(ctx)
		})},
	}
}

// rawExec runs raw SQL through the client and returns the affected rows.
func rawExec(ctx context.Context, c *ent.Client, query string, args ...any) (int, error) {
	res, err := c.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func leakRawWriteCells(p *leakPair) []leakWriteCell {
	a, v := p.a, p.v
	zero := func(query string, args ...any) func(t *testing.T) leakWrite {
		return func(*testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, query, args...)
			}, check: wantAffected(0), noChange: true}
		}
	}
	return []leakWriteCell{
		{"Raw/UPDATE orders SET note='pwned'", func(t *testing.T) leakWrite {
			own := adminCount(t, a, "orders", "tenant_id = $1::uuid", a.id.String())
			return leakWrite{
				op: func(ctx context.Context, c *ent.Client) (any, error) {
					return rawExec(ctx, c, `UPDATE orders SET note = 'pwned'`)
				},
				check: func(t *testing.T, res any, err error) {
					require.NoError(t, err)
					require.Equal(t, own, res, "rows affected: want every order of the attacker and nothing else")
					require.Zero(t, adminCount(t, a, "orders", "tenant_id = $1::uuid AND note IS DISTINCT FROM 'pwned'", a.id.String()))
				},
			}
		}},
		{"Raw/UPDATE orders WHERE id=victim", zero(`UPDATE orders SET note = 'pwned' WHERE id = ANY($1::uuid[])`, []string{v.order.String(), v.orphan.String()})},
		{"Raw/UPDATE orders WHERE tenant_id=victim", zero(`UPDATE orders SET note = 'pwned' WHERE tenant_id = $1::uuid`, v.id.String())},
		{"Raw/UPDATE customers SET name (no WHERE) leaves victim", func(t *testing.T) leakWrite {
			own := adminCount(t, a, "customers", "tenant_id = $1::uuid", a.id.String())
			return leakWrite{
				op: func(ctx context.Context, c *ent.Client) (any, error) {
					return rawExec(ctx, c, `UPDATE customers SET name = name`)
				},
				check: wantAffected(own),
			}
		}},
		{"Raw/DELETE FROM line_items WHERE order_id=victim", zero(`DELETE FROM line_items WHERE order_id = $1::uuid`, v.order.String())},
		{"Raw/DELETE FROM order_tags WHERE tag_id=victim", zero(`DELETE FROM order_tags WHERE tag_id = $1::uuid`, v.tag.String())},
		{"Raw/DELETE FROM customers WHERE id=victim", zero(`DELETE FROM customers WHERE id = $1::uuid`, v.customer.String())},
		{"Raw/INSERT tags with tenant_id=victim", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `INSERT INTO tags (id, tenant_id, name) VALUES ($1::uuid, $2::uuid, $3)`, id.String(), v.id.String(), "raw-"+short())
			}, check: wantError, created: []leakRef{{entTag, id.String()}}}
		}},
		{"Raw/INSERT tags with the default tenant_id", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `INSERT INTO tags (id, name) VALUES ($1::uuid, $2)`, id.String(), "raw-"+short())
			}, check: wantAffected(1), created: []leakRef{{entTag, id.String()}}}
		}},
		{"Raw/INSERT order_tags(victim order)", func(t *testing.T) leakWrite {
			tg := a.spareTag(t)
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `INSERT INTO order_tags (order_id, tag_id, created_at) VALUES ($1::uuid, $2::uuid, now())`, v.orphan.String(), tg.String())
			}, check: wantError, created: []leakRef{{entOrderTag, otKey(v.orphan, tg)}}}
		}},
		{"Raw/INSERT line_items(victim order)", func(t *testing.T) leakWrite {
			id := uuid.New()
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `INSERT INTO line_items (id, sku, quantity, unit_price_cents, order_id) VALUES ($1::uuid, 'raw', 1, 1, $2::uuid)`, id.String(), v.order.String())
			}, check: wantError, created: []leakRef{{entLineItem, id.String()}}}
		}},
		{"Raw/UPDATE own order SET customer_id=victim", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `UPDATE orders SET customer_id = $1::uuid WHERE id = $2::uuid`, v.customer.String(), a.orphan.String())
			}, check: wantError, noChange: true}
		}},
		{"Raw/UPDATE own order SET tenant_id=victim", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `UPDATE orders SET tenant_id = $1::uuid WHERE id = $2::uuid`, v.id.String(), a.orphan.String())
			}, check: wantError, noChange: true}
		}},
		{"Raw/INSERT orders ON CONFLICT (id) DO UPDATE victim", func(t *testing.T) leakWrite {
			return leakWrite{op: func(ctx context.Context, c *ent.Client) (any, error) {
				return rawExec(ctx, c, `INSERT INTO orders (id, number, status, total_cents, created_at) VALUES ($1::uuid, $2, 'draft', 0, now())
					ON CONFLICT (id) DO UPDATE SET note = 'pwned'`, v.order.String(), "RAW-"+short())
			}, check: wantErrOrNothing, noChange: p.sameSite, cleanup: func(t *testing.T) { adminDeleteOwn(t, a, entOrder, v.order.String()) }}
		}},
	}
}

// runLeakTx: a transaction cannot even begin without a tenant, and stays the
// attacker's transaction after a statement that failed before it was sent.
func runLeakTx(t *testing.T, env *apptest.Env, p *leakPair) int {
	t.Run("Tx/first statement refused before it is sent", func(t *testing.T) {
		tx, err := env.Client.Tx(p.a.ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback() })
		// Fails at prepare, before BEGIN and the tenant settings are sent.
		// If the driver dropped the pending BEGIN here, the statements
		// below would each run in an implicit transaction of their own,
		// with no tenant and an empty search_path.
		_, err = tx.ExecContext(p.a.ctx, `SELECT * FROM no_such_table_`+short())
		require.Error(t, err)
		r1, err1 := rawStrings(p.a.ctx, tx.Client(), `SELECT txid_current()::text, current_setting('app.current_tenant_id', true), current_setting('search_path')`)
		r2, err2 := rawStrings(p.a.ctx, tx.Client(), `SELECT txid_current()::text`)
		if err1 != nil || err2 != nil {
			// Acceptable: the transaction is aborted and cannot commit.
			require.Error(t, tx.Commit(), "statements failed (%v, %v) but the transaction commits", err1, err2)
			return
		}
		require.Equal(t, r1[0][0], r2[0][0], "statements after the failed first one run outside the transaction, each in its own implicit transaction")
		require.Equal(t, []string{p.a.id.String(), quoteIdent(p.a.schema)}, r1[0][1:], "tenant settings (app.current_tenant_id, search_path) of the transaction")
	})
	runLeakTxBegin(t, env)
	return 2
}

// runLeakTxBegin: a transaction cannot even begin without a tenant.
func runLeakTxBegin(t *testing.T, env *apptest.Env) int {
	t.Run("Tx/Begin/no-tenant", func(t *testing.T) {
		tx, err := env.Client.Tx(context.Background())
		require.ErrorIs(t, err, tenancy.ErrNoTenant)
		require.Nil(t, tx)
		tx, err = env.Client.BeginTx(context.Background(), nil)
		require.ErrorIs(t, err, tenancy.ErrNoTenant)
		require.Nil(t, tx)
	})
	return 1
}
