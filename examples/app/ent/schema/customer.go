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

// Customer is a buyer in one tenant's account.
type Customer struct {
	ent.Schema
}

func (Customer) Mixin() []ent.Mixin { return []ent.Mixin{tenancy.Mixin{}} }

func (Customer) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New),
		field.String("name").NotEmpty().MaxLen(200),
		field.String("email").NotEmpty().MaxLen(320),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (Customer) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("orders", Order.Type),
	}
}

func (Customer) Indexes() []ent.Index {
	return []ent.Index{
		// Unique per tenant, never across tenants.
		index.Fields("tenant_id", "email").Unique(),
	}
}
