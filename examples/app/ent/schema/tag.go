package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"

	"github.com/tenantry/tenantry/tenancy"
)

// Tag labels orders ("priority", "wholesale", …).
type Tag struct {
	ent.Schema
}

func (Tag) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }

func (Tag) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New),
		field.String("name").NotEmpty().MaxLen(64),
	}
}

func (Tag) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("orders", Order.Type).Ref("tags").Through("order_tags", OrderTag.Type),
	}
}

func (Tag) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tenant_id", "name").Unique()}
}
