package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/examples/app/ent/lineitem"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/examples/app/ent/ordertag"
	"github.com/tenantry/tenantry/examples/app/ent/predicate"
	"github.com/tenantry/tenantry/examples/app/ent/tag"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// This file holds the fixtures of TestLeakMatrix (leak_test.go): the rows
// seeded for each tenant of an attacker/victim pair, one adapter per
// generated entity so that every query shape runs against every entity, and
// ground-truth checks through the admin role (BYPASSRLS), which never go
// through the code under test.

// Entity names, also used in subtest names.
const (
	entCustomer = "Customer"
	entOrder    = "Order"
	entLineItem = "LineItem"
	entTag      = "Tag"
	entOrderTag = "OrderTag"
)

var leakEntityNames = []string{entCustomer, entOrder, entLineItem, entTag, entOrderTag}

// leakTable maps entity names to tables.
var leakTable = map[string]string{
	entCustomer: "customers",
	entOrder:    "orders",
	entLineItem: "line_items",
	entTag:      "tags",
	entOrderTag: "order_tags",
}

// leakTenant is one side of a pair, with the rows seeded for it.
type leakTenant struct {
	label  string // "A"
	id     tenancy.ID
	ctx    context.Context
	shard  int
	schema string
	admin  *pgxpool.Pool

	customer  uuid.UUID
	email     string
	order     uuid.UUID // the customer's order, with both line items and the tag
	number    string
	orphan    uuid.UUID // an order without customer, line items or tags
	lineItems [2]uuid.UUID
	tag       uuid.UUID
	tagName   string

	rows map[string][]leakSeedRow // entity name → seeded rows

	spare []uuid.UUID // unused tags of this tenant, consumed by OrderTag creates
}

// leakSeedRow is one seeded row: its key (the id, or "order/tag" for the
// edge schema), the value its entity's Select cell reads and the value its
// Aggregate cell sums.
type leakSeedRow struct {
	key string
	sel string
	num int64
}

func (lt *leakTenant) keys(entity string) []string {
	var ks []string
	for _, r := range lt.rows[entity] {
		ks = append(ks, r.key)
	}
	return ks
}

func (lt *leakTenant) seedRow(entity, key string) (leakSeedRow, bool) {
	for _, r := range lt.rows[entity] {
		if r.key == key {
			return r, true
		}
	}
	return leakSeedRow{}, false
}

// spareTag hands out a tag of this tenant that no order uses yet.
func (lt *leakTenant) spareTag(t *testing.T) uuid.UUID {
	t.Helper()
	require.NotEmpty(t, lt.spare, "leak matrix: out of spare tags; seed more")
	id := lt.spare[0]
	lt.spare = lt.spare[1:]
	return id
}

type predicateOT = predicate.OrderTag

func otKey(orderID, tagID uuid.UUID) string { return orderID.String() + "/" + tagID.String() }

func parseOTKey(t testing.TB, key string) (uuid.UUID, uuid.UUID) {
	o, tg, ok := strings.Cut(key, "/")
	if !ok {
		t.Fatalf("leak matrix: bad order_tag key %q", key)
	}
	return uuid.MustParse(o), uuid.MustParse(tg)
}

func leakIDs(keys []string) []uuid.UUID {
	ids := make([]uuid.UUID, len(keys))
	for i, k := range keys {
		ids[i] = uuid.MustParse(k)
	}
	return ids
}

func short() string { return strings.ReplaceAll(uuid.NewString(), "-", "")[:12] }

// leakPair is an attacker and its victim.
type leakPair struct {
	name     string // "A->B"
	a, v     *leakTenant
	schemas  map[int][]string // shard → schemas holding the app's tables
	sameSite bool             // attacker and victim share a schema
	private  *leakPrivate
}

// newLeakPair seeds fresh rows for both tenants.
func newLeakPair(t *testing.T, env *apptest.Env, attacker, victim tenancy.ID, aLabel, vLabel string) *leakPair {
	t.Helper()
	p := &leakPair{name: aLabel + "->" + vLabel, schemas: map[int][]string{}}
	p.a = seedLeakTenant(t, env, attacker, aLabel, 1000)
	p.v = seedLeakTenant(t, env, victim, vLabel, 7000)
	p.sameSite = p.a.shard == p.v.shard && p.a.schema == p.v.schema
	p.private = newLeakPrivate(t, env)
	for i, sh := range env.Shards {
		rows, err := sh.Admin.Query(context.Background(),
			`SELECT schemaname FROM pg_tables WHERE tablename = 'orders' ORDER BY 1`)
		require.NoError(t, err)
		names, err := pgxCollectStrings(rows)
		require.NoError(t, err)
		p.schemas[i] = names
	}
	return p
}

func shardOf(t *testing.T, env *apptest.Env, id tenancy.ID) (int, string) {
	t.Helper()
	pl, ok := env.Placements[id]
	require.True(t, ok, "no placement for %s", id)
	for i, sh := range env.Shards {
		if sh == pl.Shard {
			return i, pl.Schema
		}
	}
	t.Fatalf("placement of %s names an unknown shard", id)
	return 0, ""
}

// seedLeakTenant creates, as the tenant itself: a customer, an order of that
// customer with two line items and a tag linked through order_tags, an order
// without customer (so that adding it to another customer's orders is not
// refused by Ent's "customer_id IS NULL" guard alone), and spare tags.
// base makes the numbers of the two tenants of a pair distinct.
func seedLeakTenant(t *testing.T, env *apptest.Env, id tenancy.ID, label string, base int64) *leakTenant {
	t.Helper()
	lt := &leakTenant{label: label, id: id, ctx: apptest.Ctx(id), rows: map[string][]leakSeedRow{}}
	lt.shard, lt.schema = shardOf(t, env, id)
	lt.admin = env.Shards[lt.shard].Admin
	ctx, c := lt.ctx, env.Client
	run := short()

	lt.customer, lt.email = uuid.New(), "leak-"+run+"@"+strings.ToLower(label)+".test"
	c.Customer.Create().SetID(lt.customer).SetName("leak " + label + " " + run).SetEmail(lt.email).SaveX(ctx)
	lt.order, lt.number = uuid.New(), "L-"+label+"-"+run
	c.Order.Create().SetID(lt.order).SetNumber(lt.number).SetStatus(order.StatusPlaced).
		SetTotalCents(base + 100).SetCustomerID(lt.customer).SaveX(ctx)
	lt.orphan = uuid.New()
	c.Order.Create().SetID(lt.orphan).SetNumber(lt.number + "-orphan").SetTotalCents(base + 200).SaveX(ctx)
	for i := range lt.lineItems {
		lt.lineItems[i] = uuid.New()
		c.LineItem.Create().SetID(lt.lineItems[i]).SetSku(fmt.Sprintf("sku-%s-%d-%s", label, i, run)).
			SetQuantity(int(base/1000) + i + 1).SetUnitPriceCents(base + int64(i)).SetOrderID(lt.order).SaveX(ctx)
	}
	lt.tag, lt.tagName = uuid.New(), "tag-"+label+"-"+run
	c.Tag.Create().SetID(lt.tag).SetName(lt.tagName).SaveX(ctx)
	c.OrderTag.Create().SetOrderID(lt.order).SetTagID(lt.tag).SaveX(ctx)

	spares := make([]*ent.TagCreate, 160)
	for i := range spares {
		id := uuid.New()
		lt.spare = append(lt.spare, id)
		spares[i] = c.Tag.Create().SetID(id).SetName(fmt.Sprintf("spare-%s-%d-%s", label, i, run))
	}
	c.Tag.CreateBulk(spares...).SaveX(ctx)

	lt.rows[entCustomer] = []leakSeedRow{{key: lt.customer.String(), sel: lt.email}}
	lt.rows[entOrder] = []leakSeedRow{
		{key: lt.order.String(), sel: lt.number, num: base + 100},
		{key: lt.orphan.String(), sel: lt.number + "-orphan", num: base + 200},
	}
	for i, li := range lt.lineItems {
		lt.rows[entLineItem] = append(lt.rows[entLineItem], leakSeedRow{
			key: li.String(), sel: fmt.Sprintf("sku-%s-%d-%s", label, i, run), num: base/1000 + int64(i) + 1,
		})
	}
	lt.rows[entTag] = []leakSeedRow{{key: lt.tag.String(), sel: lt.tagName}}
	lt.rows[entOrderTag] = []leakSeedRow{{key: otKey(lt.order, lt.tag), sel: otKey(lt.order, lt.tag)}}

	// Ground truth: every seeded row is in the tenant's schema with its id.
	for _, e := range leakEntityNames {
		for _, k := range lt.keys(e) {
			locs := locateLeakRow(t, env, e, k)
			require.Equal(t, []leakLocation{{lt.shard, lt.schema, lt.id}}, locs, "seeded %s %s of %s", e, k, label)
		}
	}
	return lt
}

// leakLocation is where the admin role finds a row.
type leakLocation struct {
	shard  int
	schema string
	tenant tenancy.ID
}

// locateLeakRow finds a row by key in every schema of every shard, as admin.
func locateLeakRow(t *testing.T, env *apptest.Env, entity, key string) []leakLocation {
	t.Helper()
	ctx := context.Background()
	where, args := "id = $1::uuid", []any{key}
	if entity == entOrderTag {
		o, tg := parseOTKey(t, key)
		where, args = "order_id = $1::uuid AND tag_id = $2::uuid", []any{o.String(), tg.String()}
	}
	var locs []leakLocation
	for i, sh := range env.Shards {
		rows, err := sh.Admin.Query(ctx,
			`SELECT schemaname FROM pg_tables WHERE tablename = $1 ORDER BY 1`, leakTable[entity])
		require.NoError(t, err)
		schemas, err := pgxCollectStrings(rows)
		require.NoError(t, err)
		for _, s := range schemas {
			rows, err := sh.Admin.Query(ctx, `SELECT tenant_id::text FROM `+quoteIdent(s)+`.`+leakTable[entity]+` WHERE `+where, args...)
			require.NoError(t, err)
			tenants, err := pgxCollectStrings(rows)
			require.NoError(t, err)
			for _, tn := range tenants {
				locs = append(locs, leakLocation{i, s, tenancy.MustParseID(tn)})
			}
		}
	}
	return locs
}

// leakSnapshot returns every row of the tenant in its schema, as admin, as
// JSON text per table: equal snapshots mean nothing of the tenant changed.
func leakSnapshot(t *testing.T, lt *leakTenant) map[string]string {
	t.Helper()
	s := quoteIdent(lt.schema)
	q := `SELECT ` +
		`(SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM ` + s + `.customers x WHERE tenant_id = $1::uuid)::text, ` +
		`(SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM ` + s + `.orders x WHERE tenant_id = $1::uuid)::text, ` +
		`(SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM ` + s + `.line_items x WHERE tenant_id = $1::uuid)::text, ` +
		`(SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM ` + s + `.tags x WHERE tenant_id = $1::uuid)::text, ` +
		`(SELECT coalesce(json_agg(x ORDER BY x.order_id, x.tag_id), '[]') FROM ` + s + `.order_tags x WHERE tenant_id = $1::uuid)::text`
	var cu, or, li, tg, ot string
	require.NoError(t, lt.admin.QueryRow(context.Background(), q, lt.id.String()).Scan(&cu, &or, &li, &tg, &ot))
	return map[string]string{"customers": cu, "orders": or, "line_items": li, "tags": tg, "order_tags": ot}
}

// requireSameSnapshot compares snapshots table by table, so a failure names
// the table and shows a readable diff.
func requireSameSnapshot(t *testing.T, who string, before, after map[string]string) {
	t.Helper()
	for _, table := range []string{"customers", "orders", "line_items", "tags", "order_tags"} {
		if before[table] == after[table] {
			continue
		}
		var b, a []map[string]any
		_ = json.Unmarshal([]byte(before[table]), &b)
		_ = json.Unmarshal([]byte(after[table]), &a)
		require.Equal(t, b, a, "rows of the %s in table %s changed", who, table)
	}
}

// requireNoCrossRefs checks, as admin, in every schema of every shard, that
// no row of another tenant references a row of the victim.
func requireNoCrossRefs(t *testing.T, env *apptest.Env, p *leakPair) {
	t.Helper()
	v := p.v
	customers := []string{v.customer.String()}
	orders := []string{v.order.String(), v.orphan.String()}
	tags := []string{v.tag.String()}
	for shard, schemas := range p.schemas {
		for _, s := range schemas {
			s := quoteIdent(s)
			var n int
			err := env.Shards[shard].Admin.QueryRow(context.Background(), `SELECT `+
				`(SELECT count(*) FROM `+s+`.orders WHERE tenant_id <> $1::uuid AND customer_id = ANY($2::uuid[])) + `+
				`(SELECT count(*) FROM `+s+`.line_items WHERE tenant_id <> $1::uuid AND order_id = ANY($3::uuid[])) + `+
				`(SELECT count(*) FROM `+s+`.order_tags WHERE tenant_id <> $1::uuid AND (order_id = ANY($3::uuid[]) OR tag_id = ANY($4::uuid[])))`,
				v.id.String(), customers, orders, tags).Scan(&n)
			require.NoError(t, err)
			require.Zero(t, n, "shard %d schema %s: %d row(s) of another tenant reference rows of victim %s", shard, s, n, v.label)
		}
	}
}

// leakRow is a row as returned through the client under test.
type leakRow struct {
	key    string
	tenant tenancy.ID
}

// leakAgg is the result of an Aggregate(count, sum) cell.
type leakAgg struct {
	Count int
	Sum   int64
}

type aggScan struct {
	Count int        `json:"count"`
	Sum   *leakInt64 `json:"sum"`
}

// leakInt64 scans a nullable bigint/numeric (SUM of an empty set is NULL).
type leakInt64 struct{ v *int64 }

func (n *leakInt64) Scan(src any) error {
	switch x := src.(type) {
	case nil:
		n.v = nil
	case int64:
		n.v = &x
	case string:
		var v int64
		if _, err := fmt.Sscan(x, &v); err != nil {
			return err
		}
		n.v = &v
	case []byte:
		var v int64
		if _, err := fmt.Sscan(string(x), &v); err != nil {
			return err
		}
		n.v = &v
	default:
		return fmt.Errorf("leakInt64: cannot scan %T", src)
	}
	return nil
}

func toAgg(v []aggScan) leakAgg {
	if len(v) != 1 {
		return leakAgg{Count: -len(v)}
	}
	a := leakAgg{Count: v[0].Count}
	if v[0].Sum != nil && v[0].Sum.v != nil {
		a.Sum = *v[0].Sum.v
	}
	return a
}

type groupScan struct {
	TenantID tenancy.ID `json:"tenant_id"`
	Count    int        `json:"count"`
}

func toGroups(v []groupScan) map[tenancy.ID]int {
	m := map[tenancy.ID]int{}
	for _, g := range v {
		m[g.TenantID] += g.Count
	}
	return m
}

// upsertMode is how an upsert resolves a conflict.
type upsertMode string

const (
	upsertNewValues upsertMode = "UpdateNewValues"
	upsertIgnore    upsertMode = "Ignore"
	upsertNothing   upsertMode = "DoNothing"
	upsertSet       upsertMode = "UpdateSet"
)

var upsertModes = []upsertMode{upsertNewValues, upsertIgnore, upsertNothing, upsertSet}

// leakEntity runs every shape of the matrix against one generated entity.
// keys select rows; the tenant filter under test must narrow them further.
type leakEntity struct {
	name string

	all       func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error)
	allAny    func(ctx context.Context, c *ent.Client) ([]leakRow, error)
	get       func(ctx context.Context, c *ent.Client, key string) (leakRow, error) // nil: no Get (edge schema)
	only      func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error)
	first     func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error)
	ids       func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) // nil: no IDs (edge schema)
	count     func(ctx context.Context, c *ent.Client, keys []string) (int, error)
	exist     func(ctx context.Context, c *ent.Client, keys []string) (bool, error)
	aggregate func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error)
	groupBy   func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error)
	sel       func(ctx context.Context, c *ent.Client, keys []string) ([]string, error)

	// Writes. a is the tenant whose own rows fill required references;
	// tenant, when set, is passed to SetTenantID. newKey picks the id of a
	// row to create (for the edge schema: the attacker's orphan order and a
	// spare tag), so the key is known even when the write fails.
	newKey      func(t *testing.T, a *leakTenant) string
	newCreate   func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(ctx context.Context) error
	createBulk  func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(ctx context.Context) error
	upsert      func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(ctx context.Context) error
	update      func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error)
	updateOne   func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error
	updateOneID func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error // nil for the edge schema
	del         func(ctx context.Context, c *ent.Client, keys []string) (int, error)
	deleteOne   func(ctx context.Context, c *ent.Client, key string) error // nil for the edge schema
	deleteOneID func(ctx context.Context, c *ent.Client, key string) error // nil for the edge schema
}

func newUUIDKey(*testing.T, *leakTenant) string { return uuid.NewString() }

func rowsOf[T any](ns []T, f func(T) leakRow) []leakRow {
	out := make([]leakRow, len(ns))
	for i, n := range ns {
		out[i] = f(n)
	}
	return out
}

func one[T any](n T, err error, f func(T) leakRow) (leakRow, error) {
	if err != nil {
		return leakRow{}, err
	}
	return f(n), nil
}

func uuidStrings(ids []uuid.UUID, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out, nil
}

func setTenant[B interface{ SetTenantID(tenancy.ID) B }](b B, tenant *tenancy.ID) B {
	if tenant != nil {
		return b.SetTenantID(*tenant)
	}
	return b
}

func leakEntities() map[string]*leakEntity {
	custRow := func(n *ent.Customer) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	orderRow := func(n *ent.Order) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	liRow := func(n *ent.LineItem) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	tagRow := func(n *ent.Tag) leakRow { return leakRow{n.ID.String(), n.TenantID} }
	otRow := func(n *ent.OrderTag) leakRow { return leakRow{otKey(n.OrderID, n.TagID), n.TenantID} }
	otPred := func(keys []string) func(*ent.OrderTagQuery) *ent.OrderTagQuery {
		return func(q *ent.OrderTagQuery) *ent.OrderTagQuery {
			var ps []predicateOT
			for _, k := range keys {
				o, tg, _ := strings.Cut(k, "/")
				ps = append(ps, ordertag.And(ordertag.OrderID(uuid.MustParse(o)), ordertag.TagID(uuid.MustParse(tg))))
			}
			if len(ps) == 0 {
				return q.Where(ordertag.OrderIDIn()) // matches nothing
			}
			return q.Where(ordertag.Or(ps...))
		}
	}

	m := map[string]*leakEntity{}

	// Customer.
	m[entCustomer] = &leakEntity{
		name: entCustomer,
		all: func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error) {
			ns, err := c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).All(ctx)
			return rowsOf(ns, custRow), err
		},
		allAny: func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			ns, err := c.Customer.Query().All(ctx)
			return rowsOf(ns, custRow), err
		},
		get: func(ctx context.Context, c *ent.Client, key string) (leakRow, error) {
			n, err := c.Customer.Get(ctx, uuid.MustParse(key))
			return one(n, err, custRow)
		},
		only: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Only(ctx)
			return one(n, err, custRow)
		},
		first: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Order(customer.ByID()).First(ctx)
			return one(n, err, custRow)
		},
		ids: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return uuidStrings(c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).IDs(ctx))
		},
		count: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Count(ctx)
		},
		exist: func(ctx context.Context, c *ent.Client, keys []string) (bool, error) {
			return c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Exist(ctx)
		},
		aggregate: func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error) {
			var v []aggScan
			err := c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Aggregate(ent.Count()).Scan(ctx, &v)
			return toAgg(v), err
		},
		groupBy: func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error) {
			var v []groupScan
			err := c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).GroupBy(customer.FieldTenantID).Aggregate(ent.Count()).Scan(ctx, &v)
			return toGroups(v), err
		},
		sel: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return c.Customer.Query().Where(customer.IDIn(leakIDs(keys)...)).Select(customer.FieldEmail).Strings(ctx)
		},
		newKey: newUUIDKey,
		newCreate: func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(context.Context) error {
			return setTenant(c.Customer.Create().SetID(uuid.MustParse(key)).SetName("created").SetEmail(short()+"@created.test"), tenant).Exec
		},
		createBulk: func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(context.Context) error {
			return c.Customer.CreateBulk(
				c.Customer.Create().SetID(uuid.MustParse(keys[0])).SetName("bulk").SetEmail(short()+"@bulk.test"),
				setTenant(c.Customer.Create().SetID(uuid.MustParse(keys[1])).SetName("bulk").SetEmail(short()+"@bulk.test"), tenant),
			).Exec
		},
		upsert: func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(context.Context) error {
			b := setTenant(c.Customer.Create().SetID(uuid.MustParse(key)).SetName("pwned").SetEmail(short()+"@upsert.test"), tenant).
				OnConflictColumns(customer.FieldID)
			switch mode {
			case upsertNewValues:
				b = b.UpdateNewValues()
			case upsertIgnore:
				b = b.Ignore()
			case upsertNothing:
				b = b.DoNothing()
			case upsertSet:
				b = b.Update(func(u *ent.CustomerUpsert) { u.SetName("pwned") })
			}
			return func(ctx context.Context) error { return b.Exec(ctx) }
		},
		update: func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error) {
			return c.Customer.Update().Where(customer.IDIn(leakIDs(keys)...)).SetName("pwned").Save(ctx)
		},
		updateOne: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Customer.UpdateOne(&ent.Customer{ID: uuid.MustParse(key)}).SetName("pwned").Exec(ctx)
		},
		updateOneID: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Customer.UpdateOneID(uuid.MustParse(key)).SetName("pwned").Exec(ctx)
		},
		del: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Customer.Delete().Where(customer.IDIn(leakIDs(keys)...)).Exec(ctx)
		},
		deleteOne: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Customer.DeleteOne(&ent.Customer{ID: uuid.MustParse(key)}).Exec(ctx)
		},
		deleteOneID: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Customer.DeleteOneID(uuid.MustParse(key)).Exec(ctx)
		},
	}

	// Order.
	m[entOrder] = &leakEntity{
		name: entOrder,
		all: func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error) {
			ns, err := c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).All(ctx)
			return rowsOf(ns, orderRow), err
		},
		allAny: func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			ns, err := c.Order.Query().All(ctx)
			return rowsOf(ns, orderRow), err
		},
		get: func(ctx context.Context, c *ent.Client, key string) (leakRow, error) {
			n, err := c.Order.Get(ctx, uuid.MustParse(key))
			return one(n, err, orderRow)
		},
		only: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).Only(ctx)
			return one(n, err, orderRow)
		},
		first: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).Order(order.ByID()).First(ctx)
			return one(n, err, orderRow)
		},
		ids: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return uuidStrings(c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).IDs(ctx))
		},
		count: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).Count(ctx)
		},
		exist: func(ctx context.Context, c *ent.Client, keys []string) (bool, error) {
			return c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).Exist(ctx)
		},
		aggregate: func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error) {
			var v []aggScan
			err := c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).
				Aggregate(ent.Count(), ent.Sum(order.FieldTotalCents)).Scan(ctx, &v)
			return toAgg(v), err
		},
		groupBy: func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error) {
			var v []groupScan
			err := c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).GroupBy(order.FieldTenantID).Aggregate(ent.Count()).Scan(ctx, &v)
			return toGroups(v), err
		},
		sel: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return c.Order.Query().Where(order.IDIn(leakIDs(keys)...)).Select(order.FieldNumber).Strings(ctx)
		},
		newKey: newUUIDKey,
		newCreate: func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(context.Context) error {
			return setTenant(c.Order.Create().SetID(uuid.MustParse(key)).SetNumber("C-"+short()).SetCustomerID(a.customer), tenant).Exec
		},
		createBulk: func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(context.Context) error {
			return c.Order.CreateBulk(
				c.Order.Create().SetID(uuid.MustParse(keys[0])).SetNumber("B-"+short()),
				setTenant(c.Order.Create().SetID(uuid.MustParse(keys[1])).SetNumber("B-"+short()).SetCustomerID(a.customer), tenant),
			).Exec
		},
		upsert: func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(context.Context) error {
			b := setTenant(c.Order.Create().SetID(uuid.MustParse(key)).SetNumber("U-"+short()).SetNote("pwned").SetTotalCents(1), tenant).
				OnConflictColumns(order.FieldID)
			switch mode {
			case upsertNewValues:
				b = b.UpdateNewValues()
			case upsertIgnore:
				b = b.Ignore()
			case upsertNothing:
				b = b.DoNothing()
			case upsertSet:
				b = b.Update(func(u *ent.OrderUpsert) { u.SetNote("pwned") })
			}
			return func(ctx context.Context) error { return b.Exec(ctx) }
		},
		update: func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error) {
			return c.Order.Update().Where(order.IDIn(leakIDs(keys)...)).SetNote("pwned").Save(ctx)
		},
		updateOne: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Order.UpdateOne(&ent.Order{ID: uuid.MustParse(key)}).SetNote("pwned").Exec(ctx)
		},
		updateOneID: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Order.UpdateOneID(uuid.MustParse(key)).SetNote("pwned").Exec(ctx)
		},
		del: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Order.Delete().Where(order.IDIn(leakIDs(keys)...)).Exec(ctx)
		},
		deleteOne: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Order.DeleteOne(&ent.Order{ID: uuid.MustParse(key)}).Exec(ctx)
		},
		deleteOneID: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Order.DeleteOneID(uuid.MustParse(key)).Exec(ctx)
		},
	}

	// LineItem.
	m[entLineItem] = &leakEntity{
		name: entLineItem,
		all: func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error) {
			ns, err := c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).All(ctx)
			return rowsOf(ns, liRow), err
		},
		allAny: func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			ns, err := c.LineItem.Query().All(ctx)
			return rowsOf(ns, liRow), err
		},
		get: func(ctx context.Context, c *ent.Client, key string) (leakRow, error) {
			n, err := c.LineItem.Get(ctx, uuid.MustParse(key))
			return one(n, err, liRow)
		},
		only: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).Only(ctx)
			return one(n, err, liRow)
		},
		first: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).Order(lineitem.ByID()).First(ctx)
			return one(n, err, liRow)
		},
		ids: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return uuidStrings(c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).IDs(ctx))
		},
		count: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).Count(ctx)
		},
		exist: func(ctx context.Context, c *ent.Client, keys []string) (bool, error) {
			return c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).Exist(ctx)
		},
		aggregate: func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error) {
			var v []aggScan
			err := c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).
				Aggregate(ent.Count(), ent.Sum(lineitem.FieldQuantity)).Scan(ctx, &v)
			return toAgg(v), err
		},
		groupBy: func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error) {
			var v []groupScan
			err := c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).GroupBy(lineitem.FieldTenantID).Aggregate(ent.Count()).Scan(ctx, &v)
			return toGroups(v), err
		},
		sel: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return c.LineItem.Query().Where(lineitem.IDIn(leakIDs(keys)...)).Select(lineitem.FieldSku).Strings(ctx)
		},
		newKey: newUUIDKey,
		newCreate: func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(context.Context) error {
			return setTenant(c.LineItem.Create().SetID(uuid.MustParse(key)).SetSku("created").SetQuantity(1).SetUnitPriceCents(1).SetOrderID(a.orphan), tenant).Exec
		},
		createBulk: func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(context.Context) error {
			return c.LineItem.CreateBulk(
				c.LineItem.Create().SetID(uuid.MustParse(keys[0])).SetSku("bulk").SetQuantity(1).SetUnitPriceCents(1).SetOrderID(a.orphan),
				setTenant(c.LineItem.Create().SetID(uuid.MustParse(keys[1])).SetSku("bulk").SetQuantity(2).SetUnitPriceCents(2).SetOrderID(a.orphan), tenant),
			).Exec
		},
		upsert: func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(context.Context) error {
			b := setTenant(c.LineItem.Create().SetID(uuid.MustParse(key)).SetSku("pwned").SetQuantity(99).SetUnitPriceCents(0).SetOrderID(a.orphan), tenant).
				OnConflictColumns(lineitem.FieldID)
			switch mode {
			case upsertNewValues:
				b = b.UpdateNewValues()
			case upsertIgnore:
				b = b.Ignore()
			case upsertNothing:
				b = b.DoNothing()
			case upsertSet:
				b = b.Update(func(u *ent.LineItemUpsert) { u.SetSku("pwned").SetOrderID(a.orphan) })
			}
			return func(ctx context.Context) error { return b.Exec(ctx) }
		},
		update: func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error) {
			return c.LineItem.Update().Where(lineitem.IDIn(leakIDs(keys)...)).SetSku("pwned").Save(ctx)
		},
		updateOne: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.LineItem.UpdateOne(&ent.LineItem{ID: uuid.MustParse(key)}).SetSku("pwned").Exec(ctx)
		},
		updateOneID: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.LineItem.UpdateOneID(uuid.MustParse(key)).SetSku("pwned").Exec(ctx)
		},
		del: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.LineItem.Delete().Where(lineitem.IDIn(leakIDs(keys)...)).Exec(ctx)
		},
		deleteOne: func(ctx context.Context, c *ent.Client, key string) error {
			return c.LineItem.DeleteOne(&ent.LineItem{ID: uuid.MustParse(key)}).Exec(ctx)
		},
		deleteOneID: func(ctx context.Context, c *ent.Client, key string) error {
			return c.LineItem.DeleteOneID(uuid.MustParse(key)).Exec(ctx)
		},
	}

	// Tag.
	m[entTag] = &leakEntity{
		name: entTag,
		all: func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error) {
			ns, err := c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).All(ctx)
			return rowsOf(ns, tagRow), err
		},
		allAny: func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			ns, err := c.Tag.Query().All(ctx)
			return rowsOf(ns, tagRow), err
		},
		get: func(ctx context.Context, c *ent.Client, key string) (leakRow, error) {
			n, err := c.Tag.Get(ctx, uuid.MustParse(key))
			return one(n, err, tagRow)
		},
		only: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Only(ctx)
			return one(n, err, tagRow)
		},
		first: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Order(tag.ByID()).First(ctx)
			return one(n, err, tagRow)
		},
		ids: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return uuidStrings(c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).IDs(ctx))
		},
		count: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Count(ctx)
		},
		exist: func(ctx context.Context, c *ent.Client, keys []string) (bool, error) {
			return c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Exist(ctx)
		},
		aggregate: func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error) {
			var v []aggScan
			err := c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Aggregate(ent.Count()).Scan(ctx, &v)
			return toAgg(v), err
		},
		groupBy: func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error) {
			var v []groupScan
			err := c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).GroupBy(tag.FieldTenantID).Aggregate(ent.Count()).Scan(ctx, &v)
			return toGroups(v), err
		},
		sel: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			return c.Tag.Query().Where(tag.IDIn(leakIDs(keys)...)).Select(tag.FieldName).Strings(ctx)
		},
		newKey: newUUIDKey,
		newCreate: func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(context.Context) error {
			return setTenant(c.Tag.Create().SetID(uuid.MustParse(key)).SetName("created-"+short()), tenant).Exec
		},
		createBulk: func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(context.Context) error {
			return c.Tag.CreateBulk(
				c.Tag.Create().SetID(uuid.MustParse(keys[0])).SetName("bulk-"+short()),
				setTenant(c.Tag.Create().SetID(uuid.MustParse(keys[1])).SetName("bulk-"+short()), tenant),
			).Exec
		},
		upsert: func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(context.Context) error {
			b := setTenant(c.Tag.Create().SetID(uuid.MustParse(key)).SetName("pwned-"+short()), tenant).
				OnConflictColumns(tag.FieldID)
			switch mode {
			case upsertNewValues:
				b = b.UpdateNewValues()
			case upsertIgnore:
				b = b.Ignore()
			case upsertNothing:
				b = b.DoNothing()
			case upsertSet:
				b = b.Update(func(u *ent.TagUpsert) { u.SetName("pwned-" + short()) })
			}
			return func(ctx context.Context) error { return b.Exec(ctx) }
		},
		update: func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error) {
			return c.Tag.Update().Where(tag.IDIn(leakIDs(keys)...)).SetName("pwned-" + short()).Save(ctx)
		},
		updateOne: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Tag.UpdateOne(&ent.Tag{ID: uuid.MustParse(key)}).SetName("pwned-" + short()).Exec(ctx)
		},
		updateOneID: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			return c.Tag.UpdateOneID(uuid.MustParse(key)).SetName("pwned-" + short()).Exec(ctx)
		},
		del: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return c.Tag.Delete().Where(tag.IDIn(leakIDs(keys)...)).Exec(ctx)
		},
		deleteOne: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Tag.DeleteOne(&ent.Tag{ID: uuid.MustParse(key)}).Exec(ctx)
		},
		deleteOneID: func(ctx context.Context, c *ent.Client, key string) error {
			return c.Tag.DeleteOneID(uuid.MustParse(key)).Exec(ctx)
		},
	}

	// OrderTag: the edge schema, with a composite id (order_id, tag_id) and
	// so without Get, IDs, UpdateOneID, DeleteOne and DeleteOneID.
	otq := func(c *ent.Client, keys []string) *ent.OrderTagQuery { return otPred(keys)(c.OrderTag.Query()) }
	m[entOrderTag] = &leakEntity{
		name: entOrderTag,
		all: func(ctx context.Context, c *ent.Client, keys []string) ([]leakRow, error) {
			ns, err := otq(c, keys).All(ctx)
			return rowsOf(ns, otRow), err
		},
		allAny: func(ctx context.Context, c *ent.Client) ([]leakRow, error) {
			ns, err := c.OrderTag.Query().All(ctx)
			return rowsOf(ns, otRow), err
		},
		only: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := otq(c, keys).Only(ctx)
			return one(n, err, otRow)
		},
		first: func(ctx context.Context, c *ent.Client, keys []string) (leakRow, error) {
			n, err := otq(c, keys).Order(ordertag.ByOrderID()).First(ctx)
			return one(n, err, otRow)
		},
		count: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			return otq(c, keys).Count(ctx)
		},
		exist: func(ctx context.Context, c *ent.Client, keys []string) (bool, error) {
			return otq(c, keys).Exist(ctx)
		},
		aggregate: func(ctx context.Context, c *ent.Client, keys []string) (leakAgg, error) {
			var v []aggScan
			err := otq(c, keys).Aggregate(ent.Count()).Scan(ctx, &v)
			return toAgg(v), err
		},
		groupBy: func(ctx context.Context, c *ent.Client, keys []string) (map[tenancy.ID]int, error) {
			var v []groupScan
			err := otq(c, keys).GroupBy(ordertag.FieldTenantID).Aggregate(ent.Count()).Scan(ctx, &v)
			return toGroups(v), err
		},
		sel: func(ctx context.Context, c *ent.Client, keys []string) ([]string, error) {
			var v []struct {
				OrderID uuid.UUID `json:"order_id"`
				TagID   uuid.UUID `json:"tag_id"`
			}
			if err := otq(c, keys).Select(ordertag.FieldOrderID, ordertag.FieldTagID).Scan(ctx, &v); err != nil {
				return nil, err
			}
			var out []string
			for _, r := range v {
				out = append(out, otKey(r.OrderID, r.TagID))
			}
			return out, nil
		},
		newKey: func(t *testing.T, a *leakTenant) string { return otKey(a.orphan, a.spareTag(t)) },
		newCreate: func(c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID) func(context.Context) error {
			o, tg := parseOTKey(nil, key)
			return setTenant(c.OrderTag.Create().SetOrderID(o).SetTagID(tg), tenant).Exec
		},
		createBulk: func(c *ent.Client, a *leakTenant, keys [2]string, tenant *tenancy.ID) func(context.Context) error {
			o1, t1 := parseOTKey(nil, keys[0])
			o2, t2 := parseOTKey(nil, keys[1])
			return c.OrderTag.CreateBulk(
				c.OrderTag.Create().SetOrderID(o1).SetTagID(t1),
				setTenant(c.OrderTag.Create().SetOrderID(o2).SetTagID(t2), tenant),
			).Exec
		},
		upsert: func(t *testing.T, c *ent.Client, a *leakTenant, key string, tenant *tenancy.ID, mode upsertMode) func(context.Context) error {
			o, tg := parseOTKey(t, key)
			b := setTenant(c.OrderTag.Create().SetOrderID(o).SetTagID(tg), tenant).
				OnConflictColumns(ordertag.FieldOrderID, ordertag.FieldTagID)
			switch mode {
			case upsertNewValues:
				b = b.UpdateNewValues()
			case upsertIgnore:
				b = b.Ignore()
			case upsertNothing:
				b = b.DoNothing()
			case upsertSet:
				b = b.Update(func(u *ent.OrderTagUpsert) { u.SetTagID(a.tag) })
			}
			return func(ctx context.Context) error { return b.Exec(ctx) }
		},
		update: func(ctx context.Context, c *ent.Client, a *leakTenant, keys []string) (int, error) {
			var ps []predicateOT
			for _, k := range keys {
				o, tg := parseOTKey(nil, k)
				ps = append(ps, ordertag.And(ordertag.OrderID(o), ordertag.TagID(tg)))
			}
			return c.OrderTag.Update().Where(ordertag.Or(ps...)).SetTagID(a.tag).Save(ctx)
		},
		updateOne: func(ctx context.Context, c *ent.Client, a *leakTenant, key string) error {
			o, tg := parseOTKey(nil, key)
			return c.OrderTag.UpdateOne(&ent.OrderTag{OrderID: o, TagID: tg}).SetTagID(a.tag).Exec(ctx)
		},
		del: func(ctx context.Context, c *ent.Client, keys []string) (int, error) {
			var ps []predicateOT
			for _, k := range keys {
				o, tg := parseOTKey(nil, k)
				ps = append(ps, ordertag.And(ordertag.OrderID(o), ordertag.TagID(tg)))
			}
			return c.OrderTag.Delete().Where(ordertag.Or(ps...)).Exec(ctx)
		},
	}
	return m
}

// leakScope is how a cell reaches the database: directly or in a
// transaction, and with which context.
type leakScope struct {
	name    string
	tx      bool
	ctx     func(p *leakPair) context.Context
	wantErr error // nil: the operation must work, scoped to the attacker
}

var (
	scopeAttacker = leakScope{name: "attacker", ctx: func(p *leakPair) context.Context { return p.a.ctx }}
	scopeNoTenant = leakScope{name: "no-tenant", ctx: func(*leakPair) context.Context { return context.Background() }, wantErr: tenancy.ErrNoTenant}
	scopeTx       = leakScope{name: "tx", tx: true, ctx: func(p *leakPair) context.Context { return p.a.ctx }}
	// A transaction begun for the attacker, used with the victim's context.
	scopeTxVictimCtx = leakScope{name: "tx-victim-ctx", tx: true, ctx: func(p *leakPair) context.Context { return p.v.ctx }, wantErr: tenancy.ErrTenantMismatch}
	// A transaction begun for the attacker, used without a tenant.
	scopeTxNoTenant = leakScope{name: "tx-no-tenant", tx: true, ctx: func(*leakPair) context.Context { return context.Background() }, wantErr: tenancy.ErrNoTenant}

	leakScopes = []leakScope{scopeAttacker, scopeNoTenant, scopeTx, scopeTxVictimCtx, scopeTxNoTenant}
)

// open returns the client and context of the scope and a function that
// ends the transaction, if any: commit when the operation worked, roll back
// otherwise. end returns the commit error.
func (s leakScope) open(t *testing.T, env *apptest.Env, p *leakPair) (context.Context, *ent.Client, func(opErr error) error) {
	t.Helper()
	if !s.tx {
		return s.ctx(p), env.Client, func(error) error { return nil }
	}
	tx, err := env.Client.Tx(p.a.ctx)
	require.NoError(t, err)
	done := false
	t.Cleanup(func() {
		if !done {
			_ = tx.Rollback()
		}
	})
	return s.ctx(p), tx.Client(), func(opErr error) error {
		done = true
		if opErr != nil {
			return tx.Rollback()
		}
		return tx.Commit()
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}

// norm turns rows into sorted keys, marking rows of another tenant.
func norm(rows []leakRow, owner tenancy.ID) []string {
	out := []string{}
	for _, r := range rows {
		if r.tenant != owner {
			out = append(out, "LEAK:"+r.key+"@tenant:"+r.tenant.String())
			continue
		}
		out = append(out, r.key)
	}
	slices.Sort(out)
	return out
}

// notFound normalizes a single-row result: the key, or "NotFound".
func notFound(r leakRow, err error, owner tenancy.ID) (string, error) {
	if ent.IsNotFound(err) {
		return "NotFound", nil
	}
	if err != nil {
		return "", err
	}
	if r.tenant != owner {
		return "LEAK:" + r.key + "@tenant:" + r.tenant.String(), nil
	}
	return r.key, nil
}

// errLeakPanic wraps a panic raised by the code under test in a cell.
var errLeakPanic = errors.New("panic in the code under test")

// safely runs op, turning a panic into an error wrapping errLeakPanic, so
// that one broken cell fails instead of ending the whole matrix.
func safely(op func() (any, error)) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%w: %v", errLeakPanic, r)
		}
	}()
	return op()
}

// leakPrivate is a client of its own (own pools, same placements) for cells
// that have panicked inside an Ent-managed transaction: such a panic skips
// the rollback and leaks the pooled connection with its transaction open,
// which must not happen to the pool every other test shares.
type leakPrivate struct {
	client   *ent.Client
	pools    []*pgxpool.Pool
	panicked bool
}

func newLeakPrivate(t *testing.T, env *apptest.Env) *leakPrivate {
	t.Helper()
	lp := &leakPrivate{}
	shards := make([]*tenancy.Shard, len(env.Shards))
	for i := range env.Shards {
		pool, err := pgxpool.New(context.Background(), env.Clusters[i].DSN(env.Roles.App, apptest.Database))
		require.NoError(t, err)
		lp.pools = append(lp.pools, pool)
		shards[i] = &tenancy.Shard{Name: fmt.Sprintf("leak-private-%d", i), Pool: pool}
	}
	var ps []*tenancy.Placement
	for id, pl := range env.Placements {
		for i, sh := range env.Shards {
			if sh == pl.Shard {
				np, err := tenancy.NewPlacement(id, shards[i], pl.Schema, pl.Limits)
				require.NoError(t, err)
				ps = append(ps, np)
			}
		}
	}
	lp.client = ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...))))
	t.Cleanup(func() {
		if lp.panicked {
			// Close would wait forever for the leaked connection; the
			// server ends its transaction at idle_in_transaction_session_timeout.
			t.Log("leak matrix: private pools left open after a panic leaked a connection")
			return
		}
		for _, p := range lp.pools {
			p.Close()
		}
	})
	return lp
}
