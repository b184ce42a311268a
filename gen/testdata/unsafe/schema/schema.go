// Package schema holds deliberately unsafe Ent schemas: generating them with
// the tenantry extension must fail.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/tenantry/tenantry/tenancy"
)

// Invoice is tenant-scoped but its number is unique across all tenants.
type Invoice struct{ ent.Schema }

func (Invoice) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }
func (Invoice) Fields() []ent.Field {
	return []ent.Field{field.String("number").Unique(), field.String("ref")}
}
func (Invoice) Indexes() []ent.Index { return []ent.Index{index.Fields("ref").Unique()} }
func (Invoice) Edges() []ent.Edge {
	return []ent.Edge{edge.To("labels", Label.Type)}
}

// Label is tenant-scoped; the Invoice-Label M2M edge has no edge schema.
type Label struct{ ent.Schema }

func (Label) Mixin() []ent.Mixin  { return []ent.Mixin{tenancy.Mixin{}} }
func (Label) Fields() []ent.Field { return []ent.Field{field.String("name")} }
func (Label) Edges() []ent.Edge {
	return []ent.Edge{edge.From("invoices", Invoice.Type).Ref("labels")}
}

// AuditEntry is neither tenant-scoped nor marked global.
type AuditEntry struct{ ent.Schema }

func (AuditEntry) Fields() []ent.Field { return []ent.Field{field.String("what")} }

// Category is global and owns a many-to-many edge to tenant-scoped
// Document without an edge schema: its join table would have no tenant_id.
type Category struct{ ent.Schema }

func (Category) Fields() []ent.Field { return []ent.Field{field.String("name")} }
func (Category) Edges() []ent.Edge   { return []ent.Edge{edge.To("documents", Document.Type)} }
func (Category) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

// Document is tenant-scoped.
type Document struct{ ent.Schema }

func (Document) Mixin() []ent.Mixin  { return []ent.Mixin{tenancy.Mixin{}} }
func (Document) Fields() []ent.Field { return []ent.Field{field.String("title")} }
func (Document) Edges() []ent.Edge {
	return []ent.Edge{edge.From("categories", Category.Type).Ref("documents")}
}

// Secret carries the tenant annotation without the mixin: no tenant_id,
// no filter, no stamp, and no row-level security.
type Secret struct{ ent.Schema }

func (Secret) Fields() []ent.Field { return []ent.Field{field.String("value")} }
func (Secret) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Annotation{Scope: tenancy.ScopeTenant}}
}

// MovableTenant is a project mixin on tenancy.Mixin that makes tenant_id
// mutable: an update could move a row to another tenant.
type MovableTenant struct{ tenancy.Mixin }

func (MovableTenant) Fields() []ent.Field {
	return []ent.Field{field.UUID(tenancy.FieldTenantID, tenancy.ID{})}
}

// Note uses it.
type Note struct{ ent.Schema }

func (Note) Mixin() []ent.Mixin  { return []ent.Mixin{MovableTenant{}} }
func (Note) Fields() []ent.Field { return []ent.Field{field.String("text")} }

// Account and Profile are tenant-scoped, joined one-to-one: Ent puts a
// unique index on profiles' foreign key, across all tenants.
type Account struct{ ent.Schema }

func (Account) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }
func (Account) Edges() []ent.Edge  { return []ent.Edge{edge.To("profile", Profile.Type).Unique()} }

// Profile holds the key of the one-to-one edge.
type Profile struct{ ent.Schema }

func (Profile) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }
func (Profile) Edges() []ent.Edge {
	return []ent.Edge{edge.From("account", Account.Type).Ref("profile").Unique()}
}
