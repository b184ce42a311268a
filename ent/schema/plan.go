package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/tenantry/tenantry/tenancy"
)

// Plan is a named set of per-tenant limits. Durations are stored in
// milliseconds; 0 disables the timeout (or, for the admission limits, the
// limit).
type Plan struct {
	ent.Schema
}

func (Plan) Annotations() []schema.Annotation {
	return []schema.Annotation{tenancy.Global()}
}

func (Plan) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").Unique().NotEmpty().MaxLen(63).Match(nameRE),
		field.Int("max_connections").Default(0).NonNegative().
			Comment("Concurrent connections a tenant may hold on its shard; 0: no cap."),
		field.Int64("statement_timeout_ms").Default(30_000).NonNegative(),
		field.Int64("lock_timeout_ms").Default(5_000).NonNegative(),
		field.Int64("idle_in_transaction_timeout_ms").Default(60_000).NonNegative(),
		field.String("work_mem").Default("4MB").NotEmpty().MaxLen(20),
		field.Float("rate_limit").Default(0).Min(0).
			Comment("Statements and transactions per second; 0: unlimited."),
		field.Int("rate_burst").Default(0).NonNegative(),
		field.Int64("queue_timeout_ms").Default(0).NonNegative().
			Comment("How long work may wait for admission; 0: the admission default."),
		field.Bool("replica_reads").Default(false).
			Comment("Read-only transactions may go to the shard's replica."),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}

func (Plan) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("tenants", Tenant.Type),
	}
}
