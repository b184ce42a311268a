package migrate

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

var schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchemaName reports whether name is acceptable as a tenant schema
// name: lower-case letters, digits and underscores, not starting with a
// digit, at most 63 bytes, and not a name PostgreSQL reserves (pg_*,
// information_schema). The error wraps [ErrInvalidSchemaName].
func ValidateSchemaName(name string) error {
	switch {
	case !schemaNameRE.MatchString(name):
		return fmt.Errorf("%w %q: want ^[a-z_][a-z0-9_]{0,62}$", ErrInvalidSchemaName, name)
	case strings.HasPrefix(name, "pg_"), name == "information_schema":
		return fmt.Errorf("%w %q: reserved by PostgreSQL", ErrInvalidSchemaName, name)
	}
	return nil
}

// ident quotes an identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
