package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/tenantry/tenantry/tenancy"
)

// Placement says where a tenant's data lives. Its epoch grows by one with
// every change that routers must see (placement, state, plan); routers
// compare it with the epoch of their cached copy.
type Placement struct {
	ent.Schema
}

func (Placement) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Placement) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_ref", tenancy.ID{}).Immutable().
			Comment("The tenant placed (not named tenant_id: this is a control-plane table, not a tenant-scoped one)."),
		field.Int("shard_id"),
		field.String("schema").NotEmpty().MaxLen(63).Match(schemaRE),
		field.Enum("mode").Values("schema", "shared", "dedicated").Default("schema"),
		field.Int64("epoch").Default(1).Positive(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}

func (Placement) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("placement").Unique().Required().Immutable().Field("tenant_ref"),
		edge.From("shard", Shard.Type).Ref("placements").Unique().Required().Field("shard_id"),
	}
}

func (Placement) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("shard_id", "schema"),
	}
}
