package lint

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/types"
	"regexp"
	"strings"
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
// calls, method values and method expressions of their exec/query methods,
// except calls whose statement is a constant that reads no table (see
// tablelessSQL).
// The static type of the receiver decides (a *sql.DB, a pgxpool.Pool, Ent's
// sql.Driver over a *sql.DB), falling back to the type that declares the
// method (an embedded pgx.Tx). Calls through interfaces that the scoped
// driver also implements (dialect.Driver) are not reported.
func (c *checker) checkRawSQL(f *ast.File) {
	info := c.pass.TypesInfo
	parents := map[*ast.SelectorExpr]*ast.CallExpr{} // method selections that are called
	ast.Inspect(f, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if se, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr); ok {
				parents[se] = call
			}
		}
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
		offset := 0
		if sel.Kind() == types.MethodExpr {
			offset = 1
		}
		if call, ok := parents[se]; ok && c.tableless(call, fn, offset) {
			return true
		}
		c.report(se.Sel.Pos(), "rawsql", fmt.Sprintf(
			"raw SQL through (%s).%s bypasses the tenant-scoped driver: no tenant filter, search_path or app.current_tenant_id is set for it, "+
				"so nothing limits it to one tenant's rows; run it through the generated client's ExecContext/QueryContext with a tenancy.WithTenant context, "+
				"or move it to an allowed package (-tenantlint.allow, default: paths under migrate or internal/admin)",
			recv, fn.Name()))
		return true
	})
}

// tableless reports whether a raw call runs a constant statement that
// touches no table: its string parameter named query or sql (the names
// database/sql, pgx, pgconn and Ent use) is a constant for which
// tablelessSQL holds. offset is 1 for a method expression, whose first
// argument is the receiver.
func (c *checker) tableless(call *ast.CallExpr, fn *types.Func, offset int) bool {
	sig := fn.Type().(*types.Signature)
	params := sig.Params()
	for i := range params.Len() {
		p := params.At(i)
		if b, ok := p.Type().(*types.Basic); !ok || b.Kind() != types.String || p.Name() != "query" && p.Name() != "sql" {
			continue
		}
		if i+offset >= len(call.Args) {
			return false
		}
		tv, ok := c.pass.TypesInfo.Types[call.Args[i+offset]]
		if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
			return false
		}
		return tablelessSQL(constant.StringVal(tv.Value))
	}
	return false
}

// tableKeywords start or imply statements that read or change relations (or
// run code that may): a statement containing one is never tableless.
var tableKeywords = map[string]bool{
	"insert": true, "update": true, "delete": true, "merge": true, "copy": true,
	"truncate": true, "alter": true, "create": true, "drop": true, "grant": true,
	"revoke": true, "lock": true, "vacuum": true, "analyze": true, "analyse": true,
	"reindex": true, "cluster": true, "refresh": true, "into": true, "table": true,
	"call": true, "do": true, "execute": true, "import": true, "comment": true,
	"security": true, "reassign": true, "prepare": true, "declare": true,
	"fetch": true, "move": true, "returning": true,
}

// fromEnd are the words that may follow a relation (and its alias) in a FROM
// list.
var fromEnd = map[string]bool{
	"where": true, "join": true, "left": true, "right": true, "inner": true,
	"outer": true, "full": true, "cross": true, "natural": true, "on": true,
	"group": true, "order": true, "limit": true, "offset": true, "union": true,
	"intersect": true, "except": true, "having": true, "window": true, "for": true,
	"using": true,
}

// tablelessSQL reports whether a statement certainly touches no user table:
// it has none of tableKeywords, and every relation after FROM or JOIN is a
// system catalog (pg_*, pg_catalog.*, information_schema.*). So
// "SELECT 1", "SELECT pg_advisory_lock($1)", "SELECT pg_notify($1, '*')",
// "SHOW server_version_num", "LISTEN registry" and catalog queries pass;
// anything it cannot read with certainty (a subquery or a function in
// FROM) does not. A user-defined function called in a SELECT list could
// still touch a table; that is out of reach of a linter.
func tablelessSQL(q string) bool {
	// What the tokenizer does not read as PostgreSQL does is not certain:
	// dollar quotes, backslash escapes (E'...'), nested comments.
	if dollarQuote.MatchString(q) || strings.Contains(q, `\`) || strings.Count(q, "/*") > 1 {
		return false
	}
	toks := sqlTokens(q)
	if len(toks) == 0 {
		return false
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if tableKeywords[t] || runsSQLText(t) {
			return false
		}
		if t != "from" && t != "join" {
			continue
		}
		for {
			i++
			if i >= len(toks) || !catalogRelation(toks[i]) {
				return false
			}
			i++
			if i < len(toks) && toks[i] == "as" {
				i++
			}
			if i < len(toks) && isWord(toks[i]) && !fromEnd[toks[i]] {
				i++ // alias
			}
			if i < len(toks) && toks[i] == "," {
				continue
			}
			i--
			break
		}
	}
	return true
}

// dollarQuote matches the opening of a dollar-quoted string ($$ or $tag$).
var dollarQuote = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)?\$`)

// runsSQLText reports built-in functions that run SQL given as text, which
// can read any table.
func runsSQLText(t string) bool {
	return strings.Contains(t, "_to_xml") || t == "dblink" || strings.HasPrefix(t, "dblink_") || t == "ts_stat" || t == "ts_rewrite"
}

func catalogRelation(t string) bool {
	t = strings.ReplaceAll(t, `"`, "")
	return strings.HasPrefix(t, "pg_") || strings.HasPrefix(t, "information_schema.")
}

func isWord(t string) bool {
	return t != "" && (t[0] == '_' || t[0] == '"' || t[0] >= 'a' && t[0] <= 'z')
}

// sqlTokens splits a statement into lower-case words (identifiers, dotted
// names, numbers, $n) and single punctuation characters, dropping string
// literals and comments.
func sqlTokens(q string) []string {
	q = strings.ToLower(q)
	var toks []string
	for i := 0; i < len(q); {
		ch := q[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '\'':
			for i++; i < len(q); i++ {
				if q[i] == '\'' {
					if i+1 < len(q) && q[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
			i++
			toks = append(toks, "''")
		case ch == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil
			}
			i += end + 4
		case ch == '_' || ch == '"' || ch == '$' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9':
			j := i
			for j < len(q) {
				c := q[j]
				if c == '"' {
					if k := strings.IndexByte(q[j+1:], '"'); k >= 0 {
						j += k + 2
						continue
					}
					return nil
				}
				if c == '_' || c == '$' || c == '.' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
					j++
					continue
				}
				break
			}
			toks = append(toks, q[i:j])
			i = j
		default:
			toks = append(toks, string(ch))
			i++
		}
	}
	return toks
}
