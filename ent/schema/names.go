package schema

import "regexp"

// nameRE is the shape of shard and plan names and tenant slugs: they show
// up in logs, metrics and command lines.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// schemaRE is the shape of a PostgreSQL schema name that tenancy.NewPlacement
// accepts.
var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
