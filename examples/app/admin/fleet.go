package admin

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/examples/app/ent/tag"
	"github.com/tenantry/tenantry/tenancy"
)

// TenantLister lists the tenants a fleet report covers (e.g. the
// registry's non-deleted tenants, or a static deployment's).
type TenantLister func(ctx context.Context) ([]tenancy.ID, error)

// Fleet reports across every tenant on every shard. It resolves each tenant
// to its placement, groups tenants that share a schema, and runs one
// unscoped query per schema and table on that shard's admin role.
type Fleet struct {
	Client   *ent.Client
	Resolver tenancy.Resolver
	Tenants  TenantLister
}

// TenantCounts is one tenant's line of a fleet report.
type TenantCounts struct {
	Tenant     tenancy.ID `json:"tenant_id"`
	Shard      string     `json:"shard,omitempty"`
	Schema     string     `json:"schema,omitempty"`
	Customers  int        `json:"customers"`
	Orders     int        `json:"orders"`
	TotalCents int64      `json:"total_cents"`
	Tags       int        `json:"tags"`
	// Error says why the tenant could not be counted (suspended, shard
	// down, …); its counts are zero then.
	Error string `json:"error,omitempty"`
}

// Report is a fleet-wide report.
type Report struct {
	Tenants  []TenantCounts `json:"tenants"`
	Schemas  int            `json:"schemas"`
	Errors   int            `json:"errors"`
	Duration string         `json:"duration"`
}

type schemaKey struct{ shard, schema string }

type groupRow struct {
	Tenant tenancy.ID `json:"tenant_id"`
	Count  int        `json:"count"`
	Sum    int64      `json:"sum"`
}

// Counts returns customers, orders (and their value) and tags per tenant,
// across shards, ordered by tenant id. A tenant that cannot be reached is
// reported with its error; the others are still counted.
func (f *Fleet) Counts(ctx context.Context) (*Report, error) {
	start := time.Now()
	ids, err := f.Tenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin: list tenants: %w", err)
	}
	rows := make(map[tenancy.ID]*TenantCounts, len(ids))
	groups := map[schemaKey][]tenancy.ID{}
	var keys []schemaKey
	for _, id := range ids {
		tc := &TenantCounts{Tenant: id}
		rows[id] = tc
		p, err := f.Resolver.Resolve(ctx, id)
		if err != nil {
			tc.Error = firstLine(err)
			continue
		}
		tc.Shard, tc.Schema = p.Shard.Name, p.Schema
		k := schemaKey{p.Shard.Name, p.Schema}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], id)
	}
	for _, k := range keys {
		members := groups[k]
		// Route by one member; Unscoped turns the tenant filter and RLS off,
		// so the queries see every tenant of the schema.
		uctx := tenancy.Unscoped(tenancy.WithTenant(ctx, members[0]), "admin: fleet counts of schema "+k.schema+" on shard "+k.shard)
		if err := f.countSchema(uctx, rows); err != nil {
			for _, id := range members {
				rows[id].Error = firstLine(err)
			}
		}
	}
	rep := &Report{Schemas: len(keys), Tenants: make([]TenantCounts, 0, len(rows))}
	for _, tc := range rows {
		if tc.Error != "" {
			rep.Errors++
		}
		rep.Tenants = append(rep.Tenants, *tc)
	}
	slices.SortFunc(rep.Tenants, func(a, b TenantCounts) int { return cmp.Compare(a.Tenant.String(), b.Tenant.String()) })
	rep.Duration = time.Since(start).Round(time.Microsecond).String()
	return rep, nil
}

// countSchema adds the counts of every listed tenant found in the schema
// ctx routes to. Rows of tenants not listed are ignored.
func (f *Fleet) countSchema(ctx context.Context, rows map[tenancy.ID]*TenantCounts) error {
	var cs, os, ts []groupRow
	if err := f.Client.Customer.Query().GroupBy(customer.FieldTenantID).
		Aggregate(ent.As(ent.Count(), "count")).Scan(ctx, &cs); err != nil {
		return err
	}
	if err := f.Client.Order.Query().GroupBy(order.FieldTenantID).
		Aggregate(ent.As(ent.Count(), "count"), ent.As(ent.Sum(order.FieldTotalCents), "sum")).Scan(ctx, &os); err != nil {
		return err
	}
	if err := f.Client.Tag.Query().GroupBy(tag.FieldTenantID).
		Aggregate(ent.As(ent.Count(), "count")).Scan(ctx, &ts); err != nil {
		return err
	}
	for _, g := range cs {
		if tc := rows[g.Tenant]; tc != nil {
			tc.Customers = g.Count
		}
	}
	for _, g := range os {
		if tc := rows[g.Tenant]; tc != nil {
			tc.Orders, tc.TotalCents = g.Count, g.Sum
		}
	}
	for _, g := range ts {
		if tc := rows[g.Tenant]; tc != nil {
			tc.Tags = g.Count
		}
	}
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// ErrAdminToken is the cause of a 401 from the admin handler.
var ErrAdminToken = errors.New("admin: missing or wrong admin token: send Authorization: Bearer <admin token>")

// Handler serves the admin endpoints under /admin/, each request
// authenticated with the admin token (a secret separate from the tenants'
// JWT secret), compared in constant time:
//
//	GET /admin/v1/tenants/counts   the fleet report (Fleet.Counts)
type Handler struct {
	fleet *Fleet
	token [sha256.Size]byte
	mux   *http.ServeMux
}

// NewHandler returns the admin handler. The token must be at least 16
// bytes; an empty token refuses every request.
func NewHandler(fleet *Fleet, token string) (*Handler, error) {
	if len(token) < 16 {
		return nil, fmt.Errorf("admin: the admin token must have at least 16 bytes")
	}
	h := &Handler{fleet: fleet, token: sha256.Sum256([]byte(token)), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/v1/tenants/counts", h.counts)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(tok))
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], h.token[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenantry-admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": ErrAdminToken.Error(), "code": "unauthenticated"})
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) counts(w http.ResponseWriter, r *http.Request) {
	rep, err := h.fleet.Counts(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": firstLine(err), "code": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
