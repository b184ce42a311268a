package tenancy

import (
	"context"
	"fmt"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/dialect/sql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"entgo.io/ent/schema/mixin"
)

// FieldTenantID is the column every tenant-scoped table carries.
const FieldTenantID = "tenant_id"

// TenantIDDefault is the column default of tenant_id: the tenant of the
// current transaction, as set by Driver. It fills tenant_id on rows that Ent
// inserts without hooks (join tables of M2M edges) and on raw inserts, and
// row-level security checks it like any other value. The text is the form
// PostgreSQL prints back, so schema diffs see no change.
const TenantIDDefault = "(NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid"

// Mixin makes an Ent schema tenant-scoped. Embed it in the schema's Mixin
// method:
//
//	func (Order) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }
//
// It adds an immutable tenant_id column with an index, an interceptor that
// filters every query (including eager loads and graph traversals) to the
// context's tenant, and a hook that stamps tenant_id on creates and scopes
// updates and deletes. Generate the client with the tenantry entc extension
// (package gen), which adds what the interceptor needs and rejects schemas
// whose shape would let a query escape the tenant.
type Mixin struct {
	mixin.Schema
}

// Fields adds the tenant_id column.
func (Mixin) Fields() []ent.Field {
	return []ent.Field{
		field.UUID(FieldTenantID, ID{}).
			Immutable().
			Annotations(entsql.DefaultExpr(TenantIDDefault)).
			Comment("Owning tenant; set from the context, never by callers."),
	}
}

// Indexes adds an index on tenant_id.
func (Mixin) Indexes() []ent.Index {
	return []ent.Index{index.Fields(FieldTenantID)}
}

// Annotations marks the schema as tenant-scoped for the generator checks and
// for migrations (row-level security, tenant-scoped constraints).
func (Mixin) Annotations() []schema.Annotation {
	return []schema.Annotation{Annotation{Scope: ScopeTenant}}
}

// Interceptors adds the tenant filter to every query. It is a traverser, so it
// also runs for the steps of graph traversals and for eager loading.
func (Mixin) Interceptors() []ent.Interceptor {
	return []ent.Interceptor{filter{}}
}

// filter is the mixin's interceptor: a traverser that adds the tenant
// filter. It is a type of its own so that CheckEnforced can find it.
type filter struct{}

func (filter) Intercept(next ent.Querier) ent.Querier { return next }

func (filter) Traverse(ctx context.Context, q ent.Query) error { return scopeQuery(ctx, q) }

// Hooks stamps and scopes mutations.
func (Mixin) Hooks() []ent.Hook {
	return []ent.Hook{scopeMutation}
}

// predicateSetter is implemented by generated query builders (through the
// gen extension's template) and by generated mutations.
type predicateSetter interface {
	WhereP(...func(*sql.Selector))
}

func scopeQuery(ctx context.Context, q ent.Query) error {
	s := lookup(ctx)
	if s != nil && s.unscoped {
		return nil
	}
	if s == nil || s.tenant.IsZero() {
		return fmt.Errorf("query %T: %w", q, ErrNoTenant)
	}
	w, ok := q.(predicateSetter)
	if !ok {
		return fmt.Errorf("tenancy: query %T has no WhereP method: generate the client with the tenantry gen extension", q)
	}
	w.WhereP(sql.FieldEQ(FieldTenantID, s.tenant))
	return nil
}

func scopeMutation(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		s := lookup(ctx)
		if s != nil && s.unscoped {
			return next.Mutate(ctx, m)
		}
		if s == nil || s.tenant.IsZero() {
			return nil, fmt.Errorf("%s %s: %w", m.Op(), m.Type(), ErrNoTenant)
		}
		if m.Op().Is(ent.OpCreate) {
			if v, ok := m.Field(FieldTenantID); ok {
				if got, _ := v.(ID); got != s.tenant {
					return nil, fmt.Errorf("create %s with tenant_id %v in the context of tenant %s: %w", m.Type(), v, s.tenant, ErrTenantMismatch)
				}
			}
			if err := m.SetField(FieldTenantID, s.tenant); err != nil {
				return nil, fmt.Errorf("tenancy: stamp %s: %w", m.Type(), err)
			}
			return next.Mutate(ctx, m)
		}
		if c, ok := m.(interface{ TenancyCompositeID() bool }); ok && c.TenancyCompositeID() && m.Op().Is(ent.OpUpdateOne) {
			return next.Mutate(ctx, m) // see the generated TenancyCompositeID
		}
		w, ok := m.(predicateSetter)
		if !ok {
			return nil, fmt.Errorf("tenancy: mutation %T has no WhereP method", m)
		}
		w.WhereP(sql.FieldEQ(FieldTenantID, s.tenant))
		return next.Mutate(ctx, m)
	})
}
