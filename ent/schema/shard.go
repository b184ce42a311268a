package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/tenantry/tenantry/tenancy"
)

// Shard is one PostgreSQL database that holds tenant schemas.
type Shard struct {
	ent.Schema
}

func (Shard) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Shard) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").Unique().NotEmpty().MaxLen(63).Match(nameRE),
		field.String("dsn").NotEmpty().Sensitive().
			Comment("postgres:// URL of the primary; the user is replaced by the role of each pool. May hold a password: never print it unredacted."),
		field.String("replica_dsn").Optional().Sensitive().
			Comment("postgres:// URL of a read replica; empty: none."),
		field.String("region").Default(""),
		field.Int("capacity").Default(1000).Positive().
			Comment("How many tenants the shard may hold."),
		field.Bool("accepting").Default(true).
			Comment("Whether new tenants may be placed here; drained shards keep their tenants."),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (Shard) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("placements", Placement.Type),
	}
}
