package tenancy

import (
	"errors"
	"fmt"
	"reflect"

	"entgo.io/ent"
)

// ErrNotEnforced is wrapped by CheckEnforced's error: a tenant-scoped
// schema's generated client would run without Mixin's filter or hook.
var ErrNotEnforced = errors.New("tenancy: tenant scoping is not in force")

// CheckEnforced reports whether the hooks and interceptors a generated
// client runs for a tenant-scoped schema include Mixin's. The generator
// checks that a tenant-scoped schema has a mixed-in hook and interceptor,
// but it sees only where they come from, not what they are: a mixin built
// on Mixin that overrides Hooks or Interceptors passes it. Clients
// generated with the tenantry extension call CheckEnforced for every
// tenant-scoped schema in NewClient and panic on its error, before any
// query runs.
//
// Nil entries mean the generated runtime package, which fills them in, is
// not imported.
func CheckEnforced(schema string, hooks []ent.Hook, inters []ent.Interceptor) error {
	var hooked, filtered bool
	mutate := reflect.ValueOf(scopeMutation).Pointer()
	for _, h := range hooks {
		if h == nil {
			return fmt.Errorf("%w: schema %q: its hooks are not set: import the generated runtime package (import _ \"<your ent package>/runtime\") where the client is built", ErrNotEnforced, schema)
		}
		hooked = hooked || reflect.ValueOf(h).Pointer() == mutate
	}
	for _, i := range inters {
		if i == nil {
			return fmt.Errorf("%w: schema %q: its interceptors are not set: import the generated runtime package (import _ \"<your ent package>/runtime\") where the client is built", ErrNotEnforced, schema)
		}
		_, ok := i.(filter)
		filtered = filtered || ok
	}
	switch {
	case !filtered:
		return fmt.Errorf("%w: schema %q is tenant-scoped but its interceptors do not include tenancy.Mixin's tenant filter: a mixin built on tenancy.Mixin that overrides Interceptors() must return tenancy.Mixin{}.Interceptors() among its own", ErrNotEnforced, schema)
	case !hooked:
		return fmt.Errorf("%w: schema %q is tenant-scoped but its hooks do not include tenancy.Mixin's mutation hook: a mixin built on tenancy.Mixin that overrides Hooks() must return tenancy.Mixin{}.Hooks() among its own", ErrNotEnforced, schema)
	}
	return nil
}
