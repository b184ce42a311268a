package registry

import (
	"fmt"
	"strings"

	"github.com/tenantry/tenantry/tenancy"
)

// checkSchemaName refuses a schema name the migration runner would not
// discover: shared placements live in schemas named
// tenancy.SharedSchemaPrefix + anything, the others in schemas named
// tenancy.SchemaPrefix + anything (normally ID.SchemaName()).
func checkSchemaName(mode Mode, schema string) error {
	prefix := tenancy.SchemaPrefix
	if mode == ModeShared {
		prefix = tenancy.SharedSchemaPrefix
	}
	if !strings.HasPrefix(schema, prefix) || len(schema) == len(prefix) || len(schema) > 63 {
		return fmt.Errorf("%w schema %q for a %s placement: want %s followed by a name (at most 63 bytes in all), so that tenantctl migrate finds it",
			ErrInvalid, schema, mode, prefix)
	}
	if strings.HasPrefix(schema, tenancy.SpareSchemaPrefix) {
		return fmt.Errorf("%w schema %q for a %s placement: names starting %s are spare schemas, which provisioning hands out itself",
			ErrInvalid, schema, mode, tenancy.SpareSchemaPrefix)
	}
	return nil
}
