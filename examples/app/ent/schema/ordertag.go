package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"

	"entgo.io/ent/dialect/entsql"

	"github.com/tenantry/tenantry/tenancy"
)

// OrderTag is the edge schema of the Order–Tag many-to-many edge. It carries
// tenancy.Mixin, so its join table has tenant_id, row-level security and
// tenant-scoped foreign keys like every other table.
type OrderTag struct {
	ent.Schema
}

func (OrderTag) Annotations() []schema.Annotation {
	return []schema.Annotation{
		field.ID("order_id", "tag_id"),
		entsql.Table("order_tags"),
	}
}

func (OrderTag) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }

func (OrderTag) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("order_id", uuid.UUID{}),
		field.UUID("tag_id", uuid.UUID{}),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (OrderTag) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("order", Order.Type).Unique().Required().Field("order_id"),
		edge.To("tag", Tag.Type).Unique().Required().Field("tag_id"),
	}
}
