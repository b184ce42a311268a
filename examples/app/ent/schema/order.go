package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"

	"github.com/tenantry/tenantry/tenancy"
)

// Order is a customer's order.
type Order struct {
	ent.Schema
}

func (Order) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }

func (Order) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New),
		field.String("number").NotEmpty().MaxLen(40),
		field.Enum("status").Values("draft", "placed", "shipped", "cancelled").Default("draft"),
		field.Int64("total_cents").Default(0).NonNegative(),
		field.String("note").Optional(),
		field.UUID("customer_id", uuid.UUID{}).Optional(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (Order) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("customer", Customer.Type).Ref("orders").Unique().Field("customer_id"),
		edge.To("line_items", LineItem.Type),
		edge.To("tags", Tag.Type).Through("order_tags", OrderTag.Type),
	}
}

func (Order) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "number").Unique(),
		index.Fields("tenant_id", "created_at"),
	}
}
