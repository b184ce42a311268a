package api_test

// Regression tests from a review of the example app (stop 15).

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// The total of an order's line items overflowed int64 and was stored
// wrapped (1234 cents).
func TestOrderTotalDoesNotWrap(t *testing.T) {
	a := newApp(t, nil)
	var items []string
	for range 184 {
		items = append(items, `{"sku":"X","quantity":1000000,"unit_price_cents":100000000000}`)
	}
	items = append(items,
		`{"sku":"Y","quantity":1000000,"unit_price_cents":46744073709}`,
		`{"sku":"Z","quantity":1,"unit_price_cents":552850}`)
	// 184e17 + 46744073709e6 + 552850 = 2^64 + 1234
	body := fmt.Sprintf(`{"number":"WRAP-%s","line_items":[%s]}`, uuid.NewString()[:8], strings.Join(items, ","))
	r := a.as(t, apptest.C, "POST", "/v1/orders", body)
	if r.status == http.StatusBadRequest && strings.Contains(string(r.body), "total_too_large") {
		return
	}
	o := must[api.Order](t, r, 201)
	t.Errorf("order accepted with %d line items and total_cents %d; the true total is 18446744073709552850 (> MaxInt64)", len(o.LineItems), o.TotalCents)
}

// A note had no bound: a page of 200 orders could hold 200 MiB.
func TestNoteBounded(t *testing.T) {
	a := newApp(t, nil)
	note := strings.Repeat("n", api.MaxBodyBytes-200)
	r := a.as(t, apptest.C, "POST", "/v1/orders", fmt.Sprintf(`{"number":"BIG-%s","note":%q}`, uuid.NewString()[:8], note))
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "note_too_long") {
		t.Errorf("an order with a %d-byte note was stored (201); name <= 200, email <= 320, number <= 40, sku <= 64", len(note))
	}
}

// Concurrent PUTs of one tag on one order: the losers of the insert got
// 409 from an idempotent operation.
func TestTagOrderIdempotentUnderConcurrency(t *testing.T) {
	a := newApp(t, nil)
	f := seed(t, a, apptest.D)
	tok := a.token(t, apptest.D)
	bad := map[int]int{}
	for round := range 30 {
		tg := must[api.Tag](t, a.as(t, apptest.D, "POST", "/v1/tags", fmt.Sprintf(`{"name":"idem-%d-%s"}`, round, uuid.NewString()[:6])), 201)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(context.Background(), "PUT", a.srv.URL+"/v1/orders/"+f.order.String()+"/tags/"+tg.ID.String(), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := a.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 204 {
					mu.Lock()
					bad[resp.StatusCode]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	if len(bad) > 0 {
		t.Errorf("concurrent idempotent PUTs answered non-204: %v (status: count)", bad)
	}
}

// The order was read back after its transaction committed, through the
// rate limiter: a throttled read-back answered 429 "retry later" for an
// order already created, and the retry got 409.
func TestNoRetryAfterCommittedWrite(t *testing.T) {
	env := apptest.New(t)
	slow := placement(t, env, apptest.C, tenancy.Limits{RatePerSec: 0.01, Burst: 2, Plan: "tiny"})
	a := newApp(t, tenancy.NewStaticResolver(nil, slow))
	number := "THR-" + uuid.NewString()[:8]
	body := fmt.Sprintf(`{"number":%q,"line_items":[{"sku":"S","quantity":1,"unit_price_cents":5}]}`, number)
	r := a.as(t, apptest.C, "POST", "/v1/orders", body)
	if r.status == 201 {
		return
	}
	n, err := env.Client.Order.Query().Where(order.Number(number)).Count(apptest.Ctx(apptest.C))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("POST /v1/orders answered %d %s (Retry-After %s), but the order %s was created", r.status, r.body, r.header.Get("Retry-After"), number)
	}
}
