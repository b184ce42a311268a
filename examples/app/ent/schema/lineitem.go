package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"

	"github.com/tenantry/tenantry/tenancy"
)

// LineItem is one product line of an order.
type LineItem struct {
	ent.Schema
}

func (LineItem) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }

func (LineItem) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New),
		field.String("sku").NotEmpty().MaxLen(64),
		field.Int("quantity").Positive(),
		field.Int64("unit_price_cents").NonNegative(),
		field.UUID("order_id", uuid.UUID{}),
	}
}

func (LineItem) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("line_items").Unique().Required().Field("order_id"),
	}
}
