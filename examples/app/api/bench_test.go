package api_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/lineitem"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/examples/app/ent/tag"
	"github.com/tenantry/tenantry/internal/apptest"
)

// BenchmarkGetOrder: one order with its line items and tags, read through
// the generated client directly (baseline: the same three queries) and
// through HTTP with the real middleware (JWT check, access log, metrics,
// JSON), interleaved over three rounds (this machine is shared and noisy):
//
//	go test ./examples/app/api -run '^$' -bench GetOrder -benchtime 3000x
func BenchmarkGetOrder(b *testing.B) {
	a := newApp(b, nil)
	f := seed(b, a, apptest.C)
	ctx := apptest.Ctx(apptest.C)
	tok := a.token(b, apptest.C)
	url := a.srv.URL + "/v1/orders/" + f.order.String()
	for range 3 {
		benchGetOrder(b, a, ctx, f, tok, url)
	}
}

func benchGetOrder(b *testing.B, a *app, ctx context.Context, f fixture, tok, url string) {
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.env.Client.Order.Query().Where(order.ID(f.order)).
				WithLineItems(func(q *ent.LineItemQuery) { q.Order(ent.Asc(lineitem.FieldSku), ent.Asc(lineitem.FieldID)) }).
				WithTags(func(q *ent.TagQuery) { q.Order(ent.Asc(tag.FieldName)) }).
				Only(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := a.srv.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	})
}
