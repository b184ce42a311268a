package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// fixture is one tenant's rows, made through the API with its own token.
type fixture struct {
	tenant                 tenancy.ID
	customer, order, item  uuid.UUID
	tag, tag2              uuid.UUID
	email, number, tagName string
}

// ids are the fixture's row ids, which must never appear in another
// tenant's responses.
func (f fixture) ids() []uuid.UUID {
	return []uuid.UUID{f.customer, f.order, f.item, f.tag, f.tag2}
}

// unknown is a fixture of ids no tenant has.
func unknown() fixture {
	s := uuid.NewString()[:8]
	return fixture{customer: uuid.New(), order: uuid.New(), item: uuid.New(), tag: uuid.New(), tag2: uuid.New(),
		email: "nobody-" + s + "@unknown.example", number: "U-" + s, tagName: "unknown-" + s}
}

func seed(t testing.TB, a *app, id tenancy.ID) fixture {
	t.Helper()
	s := uuid.NewString()[:8]
	f := fixture{tenant: id, email: "buyer-" + s + "@" + id.String()[:8] + ".example", number: "N-" + s, tagName: "vip-" + s}
	c := must[api.Customer](t, a.as(t, id, "POST", "/v1/customers", fmt.Sprintf(`{"name":"Buyer %s","email":%q}`, s, f.email)), 201)
	f.customer = c.ID
	o := must[api.Order](t, a.as(t, id, "POST", "/v1/orders", fmt.Sprintf(
		`{"number":%q,"customer_id":%q,"note":"secret note of %s","line_items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":150},{"sku":"SKU-2","quantity":1,"unit_price_cents":700}]}`,
		f.number, c.ID, id)), 201)
	if o.TotalCents != 1000 || len(o.LineItems) != 2 {
		t.Fatalf("seeded order %+v: want total 1000 and 2 line items", o)
	}
	f.order, f.item = o.ID, o.LineItems[0].ID
	f.tag = must[api.Tag](t, a.as(t, id, "POST", "/v1/tags", fmt.Sprintf(`{"name":%q}`, f.tagName)), 201).ID
	f.tag2 = must[api.Tag](t, a.as(t, id, "POST", "/v1/tags", fmt.Sprintf(`{"name":"%s-2"}`, f.tagName)), 201).ID
	if r := a.as(t, id, "PUT", fmt.Sprintf("/v1/orders/%s/tags/%s", f.order, f.tag), ""); r.status != 204 {
		t.Fatalf("tag order: %s", r)
	}
	return f
}

// snapshot is everything a tenant has, read through the generated client
// with the tenant's own context, in a canonical text form.
func snapshot(t testing.TB, client *ent.Client, id tenancy.ID) string {
	t.Helper()
	ctx := tenancy.WithTenant(context.Background(), id)
	var lines []string
	cs, err := client.Customer.Query().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		lines = append(lines, fmt.Sprintf("customer %s %s %s", c.ID, c.Name, c.Email))
	}
	os, err := client.Order.Query().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range os {
		lines = append(lines, fmt.Sprintf("order %s %s %s %d %q %s", o.ID, o.Number, o.Status, o.TotalCents, o.Note, o.CustomerID))
	}
	lis, err := client.LineItem.Query().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, li := range lis {
		lines = append(lines, fmt.Sprintf("item %s %s %s %d %d", li.ID, li.OrderID, li.Sku, li.Quantity, li.UnitPriceCents))
	}
	ts, err := client.Tag.Query().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		lines = append(lines, fmt.Sprintf("tag %s %s", tg.ID, tg.Name))
	}
	ots, err := client.OrderTag.Query().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ot := range ots {
		lines = append(lines, fmt.Sprintf("order_tag %s %s", ot.OrderID, ot.TagID))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// httpView is what the victim sees of its rows through its own token.
func httpView(t testing.TB, a *app, f fixture) string {
	t.Helper()
	var parts []string
	for _, p := range []string{
		"/v1/customers/" + f.customer.String(), "/v1/orders/" + f.order.String(), "/v1/tags/" + f.tag.String(),
		"/v1/tags/" + f.tag2.String(), "/v1/customers?limit=200", "/v1/orders?limit=200", "/v1/tags?limit=200",
		"/v1/customers/" + f.customer.String() + "/orders", "/v1/tags/" + f.tag.String() + "/orders",
	} {
		r := a.as(t, f.tenant, "GET", p, "")
		if r.status != 200 {
			t.Fatalf("victim GET %s: %s", p, r)
		}
		parts = append(parts, string(r.body))
	}
	return strings.Join(parts, "\n")
}

// leakCase is the attack on one route: the request tenant A sends with
// another tenant's rows (victim), and what must hold of the answer.
type leakCase struct {
	// req builds the request from the attacker's fixture and the other
	// tenant's (a victim's, or unknown ids).
	req func(own, other fixture) (path, body string)
	// notFound: the answer must be 404 and byte-for-byte the answer to
	// the same request with ids that exist nowhere.
	notFound bool
	// check, when set, checks the answer instead.
	check func(t *testing.T, r response, own, victim fixture)
}

func p(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// leakCases has a row for every route of the API; TestHTTPLeak fails for a
// route without one.
var leakCases = map[string][]leakCase{
	"GET /v1/customers": {{
		req:   func(own, other fixture) (string, string) { return "/v1/customers?limit=200", "" },
		check: listHasOnly(func(f fixture) uuid.UUID { return f.customer }),
	}, {
		// A cursor taken from the victim's ids pages through A's rows only.
		req: func(own, other fixture) (string, string) {
			return "/v1/customers?limit=200&after=" + other.customer.String(), ""
		},
		check: status(200),
	}},
	"POST /v1/customers": {{
		// The victim's email is free in A's account: a 409 would reveal it.
		req: func(own, other fixture) (string, string) {
			return "/v1/customers", p(`{"name":"copy","email":%q}`, other.email)
		},
		check: status(201),
	}},
	"GET /v1/customers/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/customers/" + other.customer.String(), "" }, notFound: true,
	}},
	"PATCH /v1/customers/{id}": {{
		req: func(own, other fixture) (string, string) {
			return "/v1/customers/" + other.customer.String(), `{"name":"pwned","email":"pwned@evil.example"}`
		}, notFound: true,
	}},
	"DELETE /v1/customers/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/customers/" + other.customer.String(), "" }, notFound: true,
	}},
	"GET /v1/customers/{id}/orders": {{
		req: func(own, other fixture) (string, string) {
			return "/v1/customers/" + other.customer.String() + "/orders", ""
		}, notFound: true,
	}},
	"GET /v1/orders": {{
		req:   func(own, other fixture) (string, string) { return "/v1/orders?limit=200", "" },
		check: listHasOnly(func(f fixture) uuid.UUID { return f.order }),
	}, {
		req:   func(own, other fixture) (string, string) { return "/v1/orders?limit=200&status=draft", "" },
		check: listHasOnly(func(f fixture) uuid.UUID { return f.order }),
	}},
	"POST /v1/orders": {{
		// An order for the victim's customer.
		req: func(own, other fixture) (string, string) {
			return "/v1/orders", p(`{"number":"X-%s","customer_id":%q,"line_items":[{"sku":"S","quantity":1,"unit_price_cents":1}]}`, uuid.NewString()[:8], other.customer)
		}, notFound: true,
	}, {
		// The victim's order number is free in A's account.
		req:   func(own, other fixture) (string, string) { return "/v1/orders", p(`{"number":%q}`, other.number) },
		check: status(201),
	}},
	"GET /v1/orders/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/orders/" + other.order.String(), "" }, notFound: true,
	}},
	"PATCH /v1/orders/{id}": {{
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String(), `{"status":"cancelled","note":"pwned"}`
		}, notFound: true,
	}, {
		// A's own order pointed at the victim's customer.
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + own.order.String(), p(`{"customer_id":%q,"note":"pwned"}`, other.customer)
		}, notFound: true,
	}},
	"DELETE /v1/orders/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/orders/" + other.order.String(), "" }, notFound: true,
	}},
	"POST /v1/orders/{id}/line_items": {{
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String() + "/line_items", `{"sku":"EVIL","quantity":1,"unit_price_cents":1}`
		}, notFound: true,
	}},
	"DELETE /v1/orders/{id}/line_items/{item}": {{
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String() + "/line_items/" + other.item.String(), ""
		}, notFound: true,
	}, {
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + own.order.String() + "/line_items/" + other.item.String(), ""
		}, notFound: true,
	}},
	"PUT /v1/orders/{id}/tags/{tag}": {{
		// A's order, the victim's tag: links nothing.
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + own.order.String() + "/tags/" + other.tag2.String(), ""
		}, notFound: true,
	}, {
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String() + "/tags/" + own.tag2.String(), ""
		}, notFound: true,
	}, {
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String() + "/tags/" + other.tag2.String(), ""
		}, notFound: true,
	}},
	"DELETE /v1/orders/{id}/tags/{tag}": {{
		// The victim's existing link.
		req: func(own, other fixture) (string, string) {
			return "/v1/orders/" + other.order.String() + "/tags/" + other.tag.String(), ""
		}, notFound: true,
	}},
	"GET /v1/tags": {{
		req:   func(own, other fixture) (string, string) { return "/v1/tags?limit=200", "" },
		check: listHasOnly(func(f fixture) uuid.UUID { return f.tag }),
	}},
	"POST /v1/tags": {{
		req:   func(own, other fixture) (string, string) { return "/v1/tags", p(`{"name":%q}`, other.tagName) },
		check: status(201),
	}},
	"GET /v1/tags/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/tags/" + other.tag.String(), "" }, notFound: true,
	}},
	"PATCH /v1/tags/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/tags/" + other.tag.String(), `{"name":"pwned"}` }, notFound: true,
	}},
	"DELETE /v1/tags/{id}": {{
		req: func(own, other fixture) (string, string) { return "/v1/tags/" + other.tag2.String(), "" }, notFound: true,
	}},
	"GET /v1/tags/{id}/orders": {{
		req: func(own, other fixture) (string, string) { return "/v1/tags/" + other.tag.String() + "/orders", "" }, notFound: true,
	}},
}

func status(want int) func(t *testing.T, r response, own, victim fixture) {
	return func(t *testing.T, r response, own, victim fixture) {
		t.Helper()
		if r.status != want {
			t.Errorf("status %d, want %d: %s", r.status, want, r.body)
		}
	}
}

// listHasOnly: a 200 list that holds the attacker's row and none of the
// victim's.
func listHasOnly(id func(fixture) uuid.UUID) func(t *testing.T, r response, own, victim fixture) {
	return func(t *testing.T, r response, own, victim fixture) {
		t.Helper()
		l := must[struct {
			Items []struct {
				ID uuid.UUID `json:"id"`
			} `json:"items"`
		}](t, r, 200)
		var got []uuid.UUID
		for _, it := range l.Items {
			got = append(got, it.ID)
		}
		if !slices.Contains(got, id(own)) {
			t.Errorf("the list lacks the attacker's own row %s", id(own))
		}
		if slices.Contains(got, id(victim)) {
			t.Errorf("the list holds the victim's row %s", id(victim))
		}
	}
}

// TestHTTPLeak: for every route, tenant A's token never returns, changes or
// reveals another tenant's rows: B (same shared schema as A) and D (another
// shard). Ids of theirs are answered exactly like ids that exist nowhere,
// lists hold none of their rows, and after every attack their data,
// through the client and through their own tokens, is unchanged.
func TestHTTPLeak(t *testing.T) {
	a := newApp(t, nil)
	own := seed(t, a, apptest.A)
	victims := []fixture{seed(t, a, apptest.B), seed(t, a, apptest.D)}

	// Every route needs a row, so that a new endpoint cannot ship untested.
	for _, rt := range a.api.Routes() {
		if len(leakCases[rt.Method+" "+rt.Pattern]) == 0 {
			t.Errorf("route %s %s (%s) has no case in leakCases: add one", rt.Method, rt.Pattern, rt.Name)
		}
	}
	known := map[string]bool{}
	for _, rt := range a.api.Routes() {
		known[rt.Method+" "+rt.Pattern] = true
	}
	for k := range leakCases {
		if !known[k] {
			t.Errorf("leakCases has %q, which is not a route", k)
		}
	}

	before := map[tenancy.ID][2]string{}
	for _, v := range victims {
		before[v.tenant] = [2]string{snapshot(t, a.env.Client, v.tenant), httpView(t, a, v)}
	}
	ownBefore := snapshot(t, a.env.Client, own.tenant)

	attacks := 0
	for _, rt := range a.api.Routes() {
		key := rt.Method + " " + rt.Pattern
		for i, c := range leakCases[key] {
			for _, v := range victims {
				t.Run(fmt.Sprintf("%s#%d/victim=%s", key, i, v.tenant.String()[:8]), func(t *testing.T) {
					path, body := c.req(own, v)
					got := a.as(t, own.tenant, rt.Method, path, body)
					attacks++
					for _, id := range v.ids() {
						if strings.Contains(string(got.body), id.String()) {
							t.Errorf("the answer holds the victim's id %s: %s", id, got.body)
						}
					}
					if c.check != nil {
						c.check(t, got, own, v)
					}
					if c.notFound {
						path, body := c.req(own, unknown())
						ref := a.as(t, own.tenant, rt.Method, path, body)
						if got.status != http.StatusNotFound || ref.status != http.StatusNotFound {
							t.Errorf("status %d for the victim's ids and %d for unknown ids, want 404 for both: %s", got.status, ref.status, got.body)
						}
						if string(got.body) != string(ref.body) {
							t.Errorf("the victim's ids are answered %q, unknown ids %q: the difference reveals existence", got.body, ref.body)
						}
						_, code := errorBody(t, got)
						if code != "not_found" {
							t.Errorf("code %q, want not_found", code)
						}
					}
				})
			}
		}
	}

	for _, v := range victims {
		if got := snapshot(t, a.env.Client, v.tenant); got != before[v.tenant][0] {
			t.Errorf("tenant %s's rows changed:\nbefore:\n%s\nafter:\n%s", v.tenant, before[v.tenant][0], got)
		}
		if got := httpView(t, a, v); got != before[v.tenant][1] {
			t.Errorf("tenant %s sees other data through its own token:\nbefore:\n%s\nafter:\n%s", v.tenant, before[v.tenant][1], got)
		}
	}
	// A's own order and links are unchanged too (only creates succeeded).
	ownAfter := snapshot(t, a.env.Client, own.tenant)
	for _, line := range strings.Split(ownBefore, "\n") {
		if !strings.Contains(ownAfter, line) {
			t.Errorf("the attacker's own row %q changed", line)
		}
	}
	// No row of A's (a link, a line item, an order) points at a victim's row.
	for _, v := range victims {
		for _, id := range v.ids() {
			if strings.Contains(ownAfter, id.String()) {
				t.Errorf("the attacker's rows reference the victim's %s:\n%s", id, ownAfter)
			}
		}
	}
	if strings.Contains(ownAfter, "pwned") {
		t.Errorf("an attack wrote into the attacker's rows:\n%s", ownAfter)
	}
	t.Logf("%d attacks over %d routes, 2 victims", attacks, len(a.api.Routes()))
}
