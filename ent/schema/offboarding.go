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

// Offboarding records one offboarding of a tenant: soft (the tenant is no
// longer served, its schema is renamed to retired_schema and kept until
// retain_until), then either restored (restored_at) or purged (purged_at:
// the schema dropped, or, in a shared schema, the tenant's rows deleted).
type Offboarding struct {
	ent.Schema
}

func (Offboarding) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Offboarding) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_ref", tenancy.ID{}).Immutable(),
		field.String("shard").NotEmpty().MaxLen(63).Immutable(),
		field.String("schema").NotEmpty().MaxLen(63).Match(schemaRE).Immutable().
			Comment("The schema the tenant was served from."),
		field.String("retired_schema").Optional().MaxLen(63).Immutable().
			Comment("The schema's name while retired; empty for shared placements, whose schema stays."),
		field.Enum("mode").Values("schema", "shared", "dedicated").Immutable(),
		field.String("reason").Optional().MaxLen(500).Immutable(),
		field.Time("offboarded_at").Default(time.Now).Immutable(),
		field.Time("retain_until").Immutable(),
		field.Time("retired_at").Optional().Nillable().
			Comment("When the schema was renamed (schema and dedicated placements)."),
		field.Time("purged_at").Optional().Nillable(),
		field.Bool("forced").Default(false).
			Comment("Purged before retain_until, on request."),
		field.Time("restored_at").Optional().Nillable(),
	}
}

func (Offboarding) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("offboardings").Unique().Required().Immutable().Field("tenant_ref"),
	}
}

func (Offboarding) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_ref", "offboarded_at"),
	}
}
