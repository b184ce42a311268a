// Package handlers is application code outside the allow-list that breaks
// every tenantlint rule once.
package handlers

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/tenancy"

	"example.com/fixture/internal/admin"
)

type Server struct {
	Client *ent.Client
	Pool   *pgxpool.Pool
}

func (s *Server) Orders(w http.ResponseWriter, r *http.Request) {
	ctx := tenancy.Unscoped(r.Context(), "dashboard shows everything")
	orders, _ := s.Client.Order.Query().All(ctx)
	n, _ := admin.CountOrders(r.Context(), s.Client)
	_, _ = s.Client.Customer.Query().Count(context.Background())
	_, _ = s.Pool.Exec(r.Context(), "DELETE FROM orders")
	_, _ = len(orders), n
}

func (s *Server) Health(w http.ResponseWriter, r *http.Request) {
	_ = s.Pool.QueryRow(r.Context(), "SELECT count(*) FROM orders") //tenantlint:ok capacity gauge for the load balancer, reviewed
}
