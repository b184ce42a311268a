// Package gen is the tenantry extension for Ent's code generator (entc).
//
// It adds to the generated client what tenancy.Mixin needs (a WhereP method
// on every query builder, the upsert and raw-SQL features), and it refuses to
// generate code for schemas whose shape would let a query escape its tenant:
//
//   - a schema that is neither tenant-scoped (tenancy.Mixin) nor explicitly
//     global (tenancy.Global());
//   - a unique field, or a unique index, of a tenant-scoped schema that does
//     not include tenant_id (it would make tenants collide and let an upsert
//     reach another tenant's row);
//   - a many-to-many edge between tenant-scoped schemas without an edge
//     schema that carries tenancy.Mixin (Ent writes join-table rows with no
//     tenant filter).
//
// The generator sees where a schema's hooks and interceptors come from, not
// what they are, so the generated runtime package also checks, with
// tenancy.CheckEnforced, that every tenant-scoped schema runs the mixin's
// own filter and hook, and panics in its init, before main, if one does
// not (a mixin built on tenancy.Mixin that overrides them). The check sits
// in the runtime package, not in NewClient, because a client may be built
// during package initialization, before the runtime package has set the
// hooks.
//
// Use it from an entc program:
//
//	err := entc.Generate("./schema", &gen.Config{}, entc.Extensions(tenantrygen.Extension{}))
//
// or run the bundled command: go run github.com/tenantry/tenantry/gen/cmd/tenantrygen ./ent/schema
package gen
