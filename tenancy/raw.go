package tenancy

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrRawSQLRefused is returned for a raw statement that a tenant-scoped
// context may not run through the scoped client.
var ErrRawSQLRefused = errors.New("tenancy: raw SQL refused")

// CheckRawSQL vets a raw statement that application code sends through the
// scoped client (the generated ExecContext and QueryContext call it). In a
// tenant-scoped context the statement must be a single SELECT, WITH, INSERT,
// UPDATE, DELETE, MERGE, VALUES or TABLE statement and must not name what
// could rebind the transaction to another tenant: set_config, pg_settings,
// the tenant setting, or functions that run SQL held in a string. Unscoped
// (admin) contexts and contexts without a tenant are not checked.
//
// This guards against injected or careless SQL changing the tenant binding
// that row-level security reads; it is not a sandbox for hostile code, which
// can open its own connection. Keep raw SQL rare: tenantlint reports it.
func CheckRawSQL(ctx context.Context, query string) error {
	if s := lookup(ctx); s == nil || s.unscoped || s.tenant.IsZero() {
		return nil // unscoped, or no tenant: the driver refuses it with ErrNoTenant
	}
	q := strings.ToLower(query)
	if first := firstKeyword(q); !allowedRaw[first] {
		return fmt.Errorf("%w: a %q statement; raw SQL through the scoped client may only read and write rows (SELECT, WITH, INSERT, UPDATE, DELETE, MERGE, VALUES, TABLE)", ErrRawSQLRefused, first)
	}
	flat := strings.ReplaceAll(q, `"`, "")
	for _, bad := range rawDenied {
		if strings.Contains(flat, bad) {
			return fmt.Errorf("%w: it mentions %q, which could change the transaction's tenant binding; use the generated client, or tenancy.Unscoped in admin code", ErrRawSQLRefused, bad)
		}
	}
	return nil
}

var allowedRaw = map[string]bool{
	"select": true, "with": true, "insert": true, "update": true, "delete": true,
	"merge": true, "values": true, "table": true, "(": true,
}

// rawDenied are matched in the lower-cased statement with double quotes
// removed, string literals included (a literal can be run as SQL by the
// functions listed).
var rawDenied = []string{
	"set_config", "pg_settings", "u&",
	"query_to_xml", "cursor_to_xml", "ts_stat", "ts_rewrite", "dblink", "pg_read_file",
}

// firstKeyword returns the first token of q after whitespace and comments.
func firstKeyword(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			if q = skipBlockComment(q); q == "" {
				return ""
			}
		case strings.HasPrefix(q, "("):
			return "("
		default:
			end := strings.IndexFunc(q, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '_') })
			if end < 0 {
				return q
			}
			return q[:end]
		}
	}
}

// skipBlockComment returns q after the block comment it starts with, or ""
// if the comment does not end. Block comments nest in PostgreSQL: the
// comment ends where its depth returns to zero, not at the first "*/".
func skipBlockComment(q string) string {
	depth := 0
	for i := 0; i+1 < len(q); i++ {
		switch q[i : i+2] {
		case "/*":
			depth++
			i++
		case "*/":
			depth--
			i++
			if depth == 0 {
				return q[i+1:]
			}
		}
	}
	return ""
}
