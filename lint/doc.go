// Package lint is tenantlint, the build-time barrier of tenantry: a
// golang.org/x/tools/go/analysis analyzer that reports code which could run
// a query outside its tenant. Run it with go vet through the command in
// lint/cmd/tenantlint:
//
//	go vet -vettool=$(which tenantlint) ./...
//
// # Rules
//
// In packages outside the allow-list, tenantlint reports:
//
//  1. hatch: any use of an escape-hatch function (by default
//     tenancy.Unscoped): a call, a function value, a method value.
//     A function declared without a body whose //go:linkname target is a
//     hatch is the hatch under another name: reported at its declaration,
//     and a wrapper for its callers.
//  2. wrapper: any use of a function that reaches a hatch, directly or
//     through other functions, in any package. Every function and
//     package-level variable whose body or initializer refers to a hatch or
//     to another such object (a variable also through what any function,
//     init included, assigns to it or to a field or element of it) carries a
//     fact, exported across packages, so a
//     handler calling admin.CountAll is reported even though the hatch is
//     two packages away. Generic functions and methods of generic types are
//     tracked through their origin. Within one package only the innermost
//     use is reported (the hatch call, or the call to another package's
//     wrapper), not every local caller up the chain; a wrapper declared in
//     a generated file (a client method a generator adds) counts as foreign.
//  3. context: context.Background() or context.TODO(), directly, derived
//     with context.WithTimeout/WithCancel/WithValue/..., or through a local
//     variable assigned once, or a context whose tenant was stripped
//     (tenancy.WithTenant with the zero tenancy.ID), passed as the context
//     of an operation of a tenant-scoped generated Ent client or of
//     tenancy.Driver / tenancy.Tx. Such a query can only fail at run time
//     with tenancy.ErrNoTenant. Method values called through a local
//     variable and method expressions are followed. When the enclosing
//     function (or, for a closure, the nearest function with one) has exactly
//     one context parameter visible at the call, a suggested fix replaces
//     context.Background() with it.
//  4. rawsql: statements run on handles that bypass the scoped driver:
//     Exec/Query/QueryRow(Context) of database/sql's *DB, *Tx, *Conn and
//     *Stmt, pgx's *Conn and Tx, pgxpool's *Pool, *Conn and *Tx (so the
//     Pool and Admin pools of a tenancy.Shard), pgconn's *PgConn, sqlx, and
//     Ent's plain dialect/sql Driver, Conn and Tx. Calls through Ent's
//     dialect.Driver interface are not reported: tenancy.Driver implements
//     it too. Such a handle is also reported where it becomes a value of
//     another interface with one of its exec or query methods (sqlc's DBTX,
//     a repository's own Querier): passed as an argument, assigned,
//     returned or put in a composite literal, since the calls through that
//     interface cannot be told apart from scoped ones. A statement that is a constant and certainly touches no user
//     table is not reported: no table at all (SELECT 1, pg_advisory_lock,
//     pg_notify, LISTEN, SHOW, set_config) or only system catalogs after
//     FROM and JOIN (pg_*, information_schema.*). Any other statement, and
//     any statement built at run time, is: run it through the generated
//     client's ExecContext/QueryContext with a tenant context, move it to an
//     allowed package, or suppress it with a reason.
//
// # Generated Ent clients
//
// A package is recognized as a generated Ent client by its shape, not its
// path: it declares the types Client and Tx, and imports entgo.io/ent,
// entgo.io/ent/dialect or entgo.io/ent/dialect/sql (or, when loaded from
// export data, its Hook type is an alias of entgo.io/ent.Hook, which every
// generated client declares). It is tenant-scoped when one of its entity
// structs has the field TenantID of type tenancy.ID, which tenancy.Mixin
// adds to every scoped entity; a client of only global schemas (a control
// plane, even one that stores tenancy.ID values) needs no tenant and is not
// checked. Its
// operations are the methods whose first parameter is a context.Context on
// receivers named Client, Tx, config (ExecContext, QueryContext), selector
// (Strings, Ints, Scan, ...) or XClient, XQuery, XCreate, XCreateBulk,
// XUpdate, XUpdateOne, XDelete, XDeleteOne, XUpsertOne, XUpsertBulk,
// XSelect, XGroupBy and XMutation (OldField reads the row).
//
// # Configuration
//
// Flags (prefixed with "tenantlint." under go vet and the tenantlint
// command):
//
//	-allow  comma-separated regular expressions matched (unanchored) against
//	        the import path of each package; a matching package is exempt
//	        from every rule. Default: (^|/)migrate(/|$),(^|/)internal/admin(/|$)
//	        — paths with a migrate or internal/admin segment. Setting it
//	        replaces the default, so repeat the default entries you keep.
//	-hatch  comma-separated escape-hatch functions: import/path.Func,
//	        (*import/path.Type).Method or (import/path.Type).Method; the
//	        package path @ent stands for any generated Ent client, e.g.
//	        (*@ent.Client).Unscoped. Default:
//	        github.com/tenantry/tenantry/tenancy.Unscoped.
//	-tests  also report findings in _test.go files (default false: tests
//	        check that queries without a tenant fail, and set up rows with
//	        raw SQL).
//
// Packages that declare a hatch (the tenancy package) are always exempt: they
// are the mechanism. Files marked generated ("// Code generated ... DO NOT
// EDIT.") are not reported, since their fix belongs in the generator, but
// their facts count. Programs embedding the analyzer use NewAnalyzer with a
// Config instead of flags.
//
// # Suppression
//
// A finding is suppressed by a directive comment with a reason, on the line
// of the finding or alone on the line above it:
//
//	n, err := admin.CountAll(ctx, client) //tenantlint:ok status page shows the fleet total (SEC-7)
//
// A directive without a reason suppresses nothing and is reported itself.
// A suppression silences one line: a function whose hatch use is suppressed
// still reaches the hatch, and its callers in other packages are reported.
//
// # Limits
//
// The analysis is static and intraprocedural apart from the wrapper facts:
// calls through interfaces and function values stored in fields are not
// followed, a context is followed only through local variables assigned
// exactly once, and a hatch reached through an interface method is not
// attributed to its callers.
package lint
