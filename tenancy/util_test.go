package tenancy_test

import (
	"github.com/jackc/pgx/v5"
)

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func pgxCollectStrings(rows pgx.Rows) ([]string, error) {
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
