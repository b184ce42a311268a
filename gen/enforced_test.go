package gen_test

import (
	"errors"
	"testing"

	"entgo.io/ent"
	"github.com/stretchr/testify/require"

	overridden "github.com/tenantry/tenantry/gen/testdata/overridden"
	"github.com/tenantry/tenantry/gen/testdata/overridden/journal"
	"github.com/tenantry/tenantry/gen/testdata/overridden/ledger"
	_ "github.com/tenantry/tenantry/gen/testdata/overridden/runtime"
	"github.com/tenantry/tenantry/tenancy"
)

// A mixin built on tenancy.Mixin that overrides its interceptor or hook
// passes the generator's Check, which sees only that a mixed-in hook and
// interceptor exist. The generated NewClient must refuse to build a client
// for it.
func TestOverriddenMixinRefusedByNewClient(t *testing.T) {
	for _, tc := range []struct {
		schema string
		hooks  []ent.Hook
		inters []ent.Interceptor
		want   string
	}{
		{"Ledger", ledger.Hooks[:], ledger.Interceptors[:], `schema "Ledger" is tenant-scoped but its interceptors do not include tenancy.Mixin's tenant filter`},
		{"Journal", journal.Hooks[:], journal.Interceptors[:], `schema "Journal" is tenant-scoped but its hooks do not include tenancy.Mixin's mutation hook`},
		{"Journal", journal.Hooks[:], []ent.Interceptor{nil}, `import the generated runtime package`},
		{"Ledger", []ent.Hook{nil}, ledger.Interceptors[:], `import the generated runtime package`},
		{"Mixin", tenancy.Mixin{}.Hooks(), tenancy.Mixin{}.Interceptors(), ""},
	} {
		t.Run(tc.schema+"/"+tc.want, func(t *testing.T) {
			err := tenancy.CheckEnforced(tc.schema, tc.hooks, tc.inters)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tenancy.ErrNotEnforced)
			require.ErrorContains(t, err, tc.want)
		})
	}

	var got any
	func() {
		defer func() { got = recover() }()
		overridden.NewClient()
	}()
	err, ok := got.(error)
	require.True(t, ok, "NewClient must panic with an error, got %v", got)
	require.True(t, errors.Is(err, tenancy.ErrNotEnforced), "%v", err)
	require.ErrorContains(t, err, `schema "Journal"`) // the first tenant-scoped schema in the graph
}
