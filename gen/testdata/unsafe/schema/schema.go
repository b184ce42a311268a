// Package schema holds deliberately unsafe Ent schemas: generating them with
// the tenantry extension must fail.
package schema

import (
	"entgo.io/ent"
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
