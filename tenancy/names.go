package tenancy

// Schema naming, shared by the registry (which names the schemas of new
// placements) and the migration runner (which discovers them by prefix):
// one definition, so that every schema the registry creates is one the
// fleet runner migrates.
const (
	// SchemaPrefix starts the name of a tenant's own schema (ID.SchemaName).
	SchemaPrefix = "tenant_"
	// SharedSchemaPrefix starts the name of every shared (pooled) schema.
	SharedSchemaPrefix = "shared_"
	// DefaultSharedSchema is the shared schema of shared placements that
	// name none.
	DefaultSharedSchema = SharedSchemaPrefix + "default"
	// RetiredSchemaPrefix starts the name a schema gets when its tenant is
	// offboarded (kept for a retention period, then dropped). Neither
	// routers nor the migration runner look at such schemas.
	RetiredSchemaPrefix = "retired_"
	// SpareSchemaPrefix starts the names of spare schemas: schemas at the
	// desired state created ahead of time, which provisioning renames to a
	// new tenant's schema (migrate.Provisioner). No placement may name one.
	SpareSchemaPrefix = SchemaPrefix + "spare_"
	// MoveMarkerTable is a table a live move keeps in the tenant's own
	// schema on both shards; it holds no tenant data, and backups leave it
	// out.
	MoveMarkerTable = "tenantry_move_marker"
)

// LikePrefix returns the SQL LIKE pattern matching names that start with
// prefix (with _ and % escaped), e.g. `tenant\_%`.
func LikePrefix(prefix string) string {
	out := make([]byte, 0, len(prefix)+4)
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; c {
		case '_', '%', '\\':
			out = append(out, '\\', c)
		default:
			out = append(out, c)
		}
	}
	return string(append(out, '%'))
}
