package api_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// placement returns tenant id's apptest placement rebuilt with limits and
// options.
func placement(t *testing.T, env *apptest.Env, id tenancy.ID, limits tenancy.Limits, opts ...tenancy.PlacementOption) *tenancy.Placement {
	t.Helper()
	p := env.Placements[id]
	np, err := tenancy.NewPlacement(id, p.Shard, p.Schema, limits, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return np
}

// resolverFunc serves placements from a map and errors for the rest.
type resolverFunc func(id tenancy.ID) (*tenancy.Placement, error)

func (f resolverFunc) Resolve(_ context.Context, id tenancy.ID) (*tenancy.Placement, error) {
	return f(id)
}
func (f resolverFunc) ResolveUnscoped(context.Context) (*tenancy.Placement, error) {
	return nil, tenancy.ErrInvalidPlacement
}

func retryAfter(t *testing.T, r response) int {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	return n
}

func wantProblem(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		return
	}
	if _, got := errorBody(t, r); got != code {
		t.Errorf("%s: code %q, want %q", what, got, code)
	}
}

// TestFencedTenant: while a tenant is fenced for a move, reads are served
// and writes get a retryable 503 and change nothing.
func TestFencedTenant(t *testing.T) {
	env := apptest.New(t)
	fenced := placement(t, env, apptest.C, tenancy.DefaultLimits, tenancy.FenceWrites("moving"))
	a := newApp(t, tenancy.NewStaticResolver(nil, fenced))
	before, err := env.Client.Customer.Query().Count(apptest.Ctx(apptest.C))
	if err != nil {
		t.Fatal(err)
	}
	if r := a.as(t, apptest.C, "GET", "/v1/customers", ""); r.status != 200 {
		t.Errorf("read while fenced: %s", r)
	}
	r := a.as(t, apptest.C, "POST", "/v1/customers", `{"name":"n","email":"fenced@c.example"}`)
	wantProblem(t, "write while fenced", r, 503, "tenant_read_only")
	retryAfter(t, r)
	after, err := env.Client.Customer.Query().Count(apptest.Ctx(apptest.C))
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("a fenced write changed the customer count %d -> %d", before, after)
	}
}

// TestTenantStates: suspended and deleted tenants get 403; a tenant whose
// shard is down, or whose placement the registry cannot give, gets a 503
// with Retry-After, and other tenants are served meanwhile.
func TestTenantStates(t *testing.T) {
	env := apptest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now
	deadPool, err := pgxpool.New(context.Background(), "postgres://tenantry_app@"+deadAddr+"/app?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer deadPool.Close()
	dead := &tenancy.Shard{Name: "dead", Pool: deadPool}
	onDead, err := tenancy.NewPlacement(apptest.D, dead, apptest.D.SchemaName(), tenancy.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	suspended, deleted, registryDown := tenancy.NewID(), tenancy.NewID(), tenancy.NewID()
	a := newApp(t, resolverFunc(func(id tenancy.ID) (*tenancy.Placement, error) {
		switch id {
		case apptest.A:
			return env.Placements[apptest.A], nil
		case apptest.D:
			return onDead, nil
		case suspended:
			return nil, fmt.Errorf("tenant %s: %w", id, tenancy.ErrTenantSuspended)
		case deleted:
			return nil, fmt.Errorf("tenant %s: %w", id, tenancy.ErrTenantDeleted)
		case registryDown:
			return nil, fmt.Errorf("tenant %s: %w", id, errRegistry)
		}
		return nil, fmt.Errorf("tenant %s: %w", id, tenancy.ErrUnknownTenant)
	}))
	wantProblem(t, "suspended", a.as(t, suspended, "GET", "/v1/orders", ""), 403, "tenant_suspended")
	wantProblem(t, "deleted", a.as(t, deleted, "GET", "/v1/orders", ""), 403, "tenant_deleted")
	r := a.as(t, apptest.D, "GET", "/v1/orders", "")
	wantProblem(t, "shard down", r, 503, "unavailable")
	retryAfter(t, r)
	if strings.Contains(string(r.body), deadAddr) || strings.Contains(string(r.body), "dead") {
		t.Errorf("the 503 names the shard: %s", r.body)
	}
	r = a.as(t, registryDown, "GET", "/v1/orders", "")
	wantProblem(t, "registry down", r, 503, "unavailable")
	retryAfter(t, r)
	if r := a.as(t, apptest.A, "GET", "/v1/orders", ""); r.status != 200 {
		t.Errorf("a tenant on a healthy shard: %s", r)
	}
}

var errRegistry = fmt.Errorf("lookup: %w", router.ErrRegistryUnavailable)

// TestThrottled: a tenant over its plan's rate gets 429 with Retry-After;
// another tenant on the same shard is not affected.
func TestThrottled(t *testing.T) {
	env := apptest.New(t)
	// 0.5/s: a token every 2 s, so that the 8 rounds below exceed the
	// burst however slowly a loaded machine runs them.
	slow := placement(t, env, apptest.A, tenancy.Limits{RatePerSec: 0.5, Burst: 2, Plan: "tiny"})
	a := newApp(t, tenancy.NewStaticResolver(nil, slow, env.Placements[apptest.B]))
	var throttled, ok int
	for range 8 {
		r := a.as(t, apptest.A, "GET", "/v1/tags", "")
		switch r.status {
		case 200:
			ok++
		case 429:
			throttled++
			wantProblem(t, "throttled", r, 429, "throttled")
			retryAfter(t, r)
		default:
			t.Fatalf("noisy tenant: %s", r)
		}
		if r := a.as(t, apptest.B, "GET", "/v1/tags", ""); r.status != 200 {
			t.Fatalf("the neighbour was refused: %s", r)
		}
	}
	if throttled == 0 || ok == 0 {
		t.Errorf("%d served, %d throttled: want both (burst 2, 0.5/s)", ok, throttled)
	}
}

// TestInputErrors: malformed input is a 400 with {error, code}, a clash
// with the tenant's own unique value a 409; nothing is written.
func TestInputErrors(t *testing.T) {
	a := newApp(t, nil)
	f := seed(t, a, apptest.C)
	big := `{"name":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/customers", `{"name":`, 400, "bad_json"},
		{"POST", "/v1/customers", ``, 400, "bad_json"},
		{"POST", "/v1/customers", `[]`, 400, "bad_json"},
		{"POST", "/v1/customers", `{"name":"a","email":"b@c.d","admin":true}`, 400, "bad_json"},
		{"POST", "/v1/customers", `{"name":"a","email":"b@c.d"} {"name":"again"}`, 400, "bad_json"},
		{"POST", "/v1/customers", `{"name":"a"}`, 400, "missing_field"},
		{"POST", "/v1/customers", `{"name":"","email":"x@y.z"}`, 400, "invalid"},
		{"POST", "/v1/customers", `{"name":1,"email":"x@y.z"}`, 400, "bad_json"},
		{"POST", "/v1/customers", fmt.Sprintf(`{"name":"dup","email":%q}`, f.email), 409, "conflict"},
		{"POST", "/v1/tags", big, 413, "body_too_large"},
		{"GET", "/v1/customers/not-a-uuid", ``, 400, "bad_id"},
		{"GET", "/v1/orders/" + strings.ToUpper(f.order.String()) + "x", ``, 400, "bad_id"},
		{"GET", "/v1/orders?limit=0", ``, 400, "bad_limit"},
		{"GET", "/v1/orders?limit=201", ``, 400, "bad_limit"},
		{"GET", "/v1/orders?after=zzz", ``, 400, "bad_cursor"},
		{"GET", "/v1/orders?status=lost", ``, 400, "bad_status"},
		{"POST", "/v1/orders", `{"number":"q","line_items":[{"sku":"s","quantity":0,"unit_price_cents":1}]}`, 400, "bad_quantity"},
		{"POST", "/v1/orders", `{"number":"q","line_items":[{"sku":"s","quantity":1,"unit_price_cents":-1}]}`, 400, "bad_price"},
		{"POST", "/v1/orders", `{"number":"q","status":"paid"}`, 400, "bad_status"},
		{"POST", "/v1/orders", fmt.Sprintf(`{"number":%q}`, f.number), 409, "conflict"},
		{"PATCH", "/v1/orders/" + f.order.String(), `{"line_items":[]}`, 400, "read_only_field"},
	}
	before := snapshot(t, a.env.Client, apptest.C)
	for _, c := range cases {
		r := a.as(t, apptest.C, c.method, c.path, c.body)
		wantProblem(t, c.method+" "+c.path+" "+trunc(c.body), r, c.status, c.code)
	}
	if after := snapshot(t, a.env.Client, apptest.C); after != before {
		t.Errorf("refused requests changed data:\n%s\n---\n%s", before, after)
	}
	if r := a.as(t, apptest.C, "GET", "/v1/nothing", ""); r.status != 404 {
		t.Errorf("unknown route: %s", r)
	}
	if r := a.as(t, apptest.C, "PUT", "/v1/customers", ""); r.status != 405 {
		t.Errorf("wrong method: %d", r.status)
	}
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// TestCRUD walks the API as a client would: pagination, updates, line
// items that move the total, tags, deletes.
func TestCRUD(t *testing.T) {
	a := newApp(t, nil)
	id := apptest.D
	var tags []api.Tag
	for i := range 5 {
		tags = append(tags, must[api.Tag](t, a.as(t, id, "POST", "/v1/tags", fmt.Sprintf(`{"name":"crud-%d-%s"}`, i, tenancy.NewID().String()[:6])), 201))
	}
	seen := map[string]bool{}
	next, pages := "", 0
	for {
		l := must[api.List[api.Tag]](t, a.as(t, id, "GET", "/v1/tags?limit=2"+next, ""), 200)
		pages++
		for _, tg := range l.Items {
			if seen[tg.ID.String()] {
				t.Fatalf("tag %s on two pages", tg.ID)
			}
			seen[tg.ID.String()] = true
		}
		if l.Next == nil {
			break
		}
		next = "&after=" + l.Next.String()
	}
	for _, tg := range tags {
		if !seen[tg.ID.String()] {
			t.Errorf("pagination missed tag %s", tg.ID)
		}
	}
	if pages < 3 {
		t.Errorf("%d pages of 2 for %d tags", pages, len(seen))
	}

	c := must[api.Customer](t, a.as(t, id, "POST", "/v1/customers", `{"name":"Ada","email":"ada@crud.example"}`), 201)
	c = must[api.Customer](t, a.as(t, id, "PATCH", "/v1/customers/"+c.ID.String(), `{"name":"Ada L."}`), 200)
	if c.Name != "Ada L." || c.Email != "ada@crud.example" {
		t.Errorf("patched customer %+v", c)
	}
	o := must[api.Order](t, a.as(t, id, "POST", "/v1/orders", fmt.Sprintf(`{"number":"CRUD-1","customer_id":%q,"line_items":[{"sku":"A","quantity":3,"unit_price_cents":100}]}`, c.ID)), 201)
	li := must[api.LineItem](t, a.as(t, id, "POST", "/v1/orders/"+o.ID.String()+"/line_items", `{"sku":"B","quantity":2,"unit_price_cents":250}`), 201)
	if r := a.as(t, id, "PUT", "/v1/orders/"+o.ID.String()+"/tags/"+tags[0].ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	if r := a.as(t, id, "PUT", "/v1/orders/"+o.ID.String()+"/tags/"+tags[0].ID.String(), ""); r.status != 204 {
		t.Fatalf("tagging twice: %s", r)
	}
	o = must[api.Order](t, a.as(t, id, "GET", "/v1/orders/"+o.ID.String(), ""), 200)
	if o.TotalCents != 800 || len(o.LineItems) != 2 || len(o.Tags) != 1 || o.Tags[0].ID != tags[0].ID {
		t.Errorf("order %+v: want total 800, 2 line items, tag %s", o, tags[0].ID)
	}
	if l := must[api.List[api.Order]](t, a.as(t, id, "GET", "/v1/tags/"+tags[0].ID.String()+"/orders", ""), 200); len(l.Items) != 1 || l.Items[0].ID != o.ID {
		t.Errorf("tag's orders %+v", l.Items)
	}
	if r := a.as(t, id, "DELETE", "/v1/orders/"+o.ID.String()+"/line_items/"+li.ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	o = must[api.Order](t, a.as(t, id, "PATCH", "/v1/orders/"+o.ID.String(), `{"status":"placed","note":"rush"}`), 200)
	if o.TotalCents != 300 || o.Status != "placed" || o.Note != "rush" {
		t.Errorf("order after removing B and placing: %+v", o)
	}
	if r := a.as(t, id, "DELETE", "/v1/orders/"+o.ID.String()+"/tags/"+tags[0].ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	if r := a.as(t, id, "DELETE", "/v1/customers/"+c.ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	o = must[api.Order](t, a.as(t, id, "GET", "/v1/orders/"+o.ID.String(), ""), 200)
	if o.CustomerID != nil || len(o.Tags) != 0 {
		t.Errorf("order after deleting its customer and untagging: %+v", o)
	}
	if r := a.as(t, id, "DELETE", "/v1/orders/"+o.ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	if r := a.as(t, id, "DELETE", "/v1/tags/"+tags[0].ID.String(), ""); r.status != 204 {
		t.Fatal(r)
	}
	if r := a.as(t, id, "GET", "/v1/orders/"+o.ID.String(), ""); r.status != 404 {
		t.Errorf("deleted order: %s", r)
	}
	if n, err := a.env.Client.Customer.Query().Where(customer.ID(c.ID)).Count(apptest.Ctx(id)); err != nil || n != 0 {
		t.Errorf("deleted customer still counted %d (%v)", n, err)
	}
}

// TestClassify: the mapping of errors that the tests above do not provoke
// through a database.
func TestClassify(t *testing.T) {
	busy := fmt.Errorf("query: %w", &admission.BusyError{Tenant: apptest.A, Reason: "queue timeout"})
	cases := []struct {
		err    error
		status int
		code   string
		retry  bool
	}{
		{busy, 429, "tenant_busy", true},
		{fmt.Errorf("x: %w", admission.ErrTenantBusy), 429, "tenant_busy", true},
		{fmt.Errorf("x: %w", ratelimit.ErrThrottled), 429, "throttled", true},
		{fmt.Errorf("x: %w", tenancy.ErrTenantReadOnly), 503, "tenant_read_only", true},
		{fmt.Errorf("query: %w", &tenancy.ShardUnavailableError{Shard: "s1", Err: errors.New("conn closed")}), 503, "unavailable", true},
		{context.DeadlineExceeded, 503, "timeout", true},
		{errors.New("boom: secret detail"), 500, "internal", false},
	}
	for _, c := range cases {
		p := api.Classify(c.err)
		if p.Status != c.status || p.Code != c.code || (p.RetryAfter > 0) != c.retry {
			t.Errorf("Classify(%v) = %+v, want %d %s retry=%t", c.err, p, c.status, c.code, c.retry)
		}
		if strings.Contains(p.Message, "secret") {
			t.Errorf("the message of %v repeats its cause: %q", c.err, p.Message)
		}
	}
}
