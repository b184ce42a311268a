package api

import (
	"context"
	"database/sql"
	"testing"

	"example.com/app/ent"
	"example.com/app/internal/admin"
	"github.com/tenantry/tenantry/tenancy"
)

// Test files are not reported by default (-tenantlint.tests=false): tests
// check that a context without a tenant fails and set up rows with raw SQL.
func TestFailsClosed(t *testing.T) {
	var c *ent.Client
	var db *sql.DB
	_, _ = c.Order.Query().All(context.Background())
	_, _ = db.Exec("INSERT INTO orders VALUES (1)")
	_ = tenancy.Unscoped(context.Background(), "test")
	_, _ = admin.CountAll(context.Background(), c)
}
