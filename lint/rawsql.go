package lint

import (
	"fmt"
	"go/ast"
	"go/types"
)

// rawSQL lists, per package path and receiver type, the methods that run a
// statement on a connection of their own, outside the tenant-scoped driver.
var rawSQL = func() map[string]map[string]map[string]bool {
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	stdsql := set("Exec", "ExecContext", "Query", "QueryContext", "QueryRow", "QueryRowContext")
	pgx := set("Exec", "Query", "QueryRow", "SendBatch", "CopyFrom")
	pgconn := set("Exec", "ExecParams", "ExecPrepared", "ExecBatch", "CopyFrom")
	entsql := set("Exec", "Query", "ExecContext", "QueryContext")
	m := map[string]map[string]map[string]bool{
		"database/sql":                    {"DB": stdsql, "Tx": stdsql, "Conn": stdsql, "Stmt": stdsql},
		"entgo.io/ent/dialect/sql":        {"Driver": entsql, "Conn": entsql, "Tx": entsql, "ExecQuerier": entsql},
		"github.com/jmoiron/sqlx":         {"DB": stdsql, "Tx": stdsql, "Conn": stdsql, "Stmt": stdsql},
		"github.com/jackc/pgx/v5/pgconn":  {"PgConn": pgconn},
		"github.com/jackc/pgx/v4/pgconn":  {"PgConn": pgconn},
		"github.com/jackc/pgconn":         {"PgConn": pgconn},
		"github.com/jackc/pgx/v5":         {"Conn": pgx, "Tx": pgx},
		"github.com/jackc/pgx/v4":         {"Conn": pgx, "Tx": pgx},
		"github.com/jackc/pgx/v5/pgxpool": {"Pool": pgx, "Conn": pgx, "Tx": pgx},
		"github.com/jackc/pgx/v4/pgxpool": {"Pool": pgx, "Conn": pgx, "Tx": pgx},
	}
	return m
}()

// rawType returns the package-qualified name of t if methods of t named
// method run raw SQL.
func rawType(t types.Type, method string) (string, bool) {
	n := namedOf(t)
	if n == nil || n.Obj().Pkg() == nil {
		return "", false
	}
	if rawSQL[n.Obj().Pkg().Path()][n.Obj().Name()][method] {
		star := ""
		if _, ok := types.Unalias(t).(*types.Pointer); ok {
			star = "*"
		}
		return star + n.Obj().Pkg().Name() + "." + n.Obj().Name(), true
	}
	return "", false
}

// checkRawSQL reports statements run on raw database handles (rule 4):
// calls, method values and method expressions of their exec/query methods.
// The static type of the receiver decides (a *sql.DB, a pgxpool.Pool, Ent's
// sql.Driver over a *sql.DB), falling back to the type that declares the
// method (an embedded pgx.Tx). Calls through interfaces that the scoped
// driver also implements (dialect.Driver) are not reported.
func (c *checker) checkRawSQL(f *ast.File) {
	info := c.pass.TypesInfo
	ast.Inspect(f, func(n ast.Node) bool {
		se, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		sel := info.Selections[se]
		if sel == nil || sel.Kind() == types.FieldVal {
			return true
		}
		fn, ok := sel.Obj().(*types.Func)
		if !ok {
			return true
		}
		recv, ok := rawType(sel.Recv(), fn.Name())
		if !ok {
			sig := fn.Type().(*types.Signature)
			if sig.Recv() == nil {
				return true
			}
			if recv, ok = rawType(sig.Recv().Type(), fn.Name()); !ok {
				return true
			}
		}
		c.report(se.Sel.Pos(), "rawsql", fmt.Sprintf(
			"raw SQL through (%s).%s bypasses the tenant-scoped driver: no tenant filter, search_path or app.current_tenant_id is set for it, "+
				"so nothing limits it to one tenant's rows; run it through the generated client's ExecContext/QueryContext with a tenancy.WithTenant context, "+
				"or move it to an allowed package (-tenantlint.allow, default: paths under migrate or internal/admin)",
			recv, fn.Name()))
		return true
	})
}
