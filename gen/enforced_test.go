package gen_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"entgo.io/ent"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/gen/testdata/overridden/schema"
	"github.com/tenantry/tenantry/tenancy"
)

// A mixin built on tenancy.Mixin that overrides its interceptor or hook
// passes the generator's Check, which sees only that a mixed-in hook and
// interceptor exist. tenancy.CheckEnforced tells them apart.
func TestCheckEnforced(t *testing.T) {
	ledger, journal := schema.Ledger{}.Mixin()[0], schema.Journal{}.Mixin()[0]
	for _, tc := range []struct {
		schema string
		hooks  []ent.Hook
		inters []ent.Interceptor
		want   string
	}{
		{"Ledger", ledger.Hooks(), ledger.Interceptors(), `schema "Ledger" is tenant-scoped but its interceptors do not include tenancy.Mixin's tenant filter`},
		{"Journal", journal.Hooks(), journal.Interceptors(), `schema "Journal" is tenant-scoped but its hooks do not include tenancy.Mixin's mutation hook`},
		{"Journal", tenancy.Mixin{}.Hooks(), []ent.Interceptor{nil}, `its interceptors are not set`},
		{"Ledger", []ent.Hook{nil}, tenancy.Mixin{}.Interceptors(), `its hooks are not set`},
		{"Mixin", tenancy.Mixin{}.Hooks(), tenancy.Mixin{}.Interceptors(), ""},
		{"Both", append(journal.Hooks(), tenancy.Mixin{}.Hooks()...), append(ledger.Interceptors(), tenancy.Mixin{}.Interceptors()...), ""},
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
}

// TestOverriddenMixinRefusedAtStart runs a program on the generated fixture
// graph: the generated runtime package's init must stop it before main.
func TestOverriddenMixinRefusedAtStart(t *testing.T) {
	if testing.Short() {
		t.Log("builds a program; TestCheckEnforced covers the check in -short runs")
		return
	}
	out, err := exec.Command("go", "run", "./testdata/overriddenmain").CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "want a non-zero exit, got %v\n%s", err, out)
	require.False(t, strings.Contains(string(out), "started:"), "main ran:\n%s", out)
	require.Contains(t, string(out), `tenancy: tenant scoping is not in force: schema "Journal"`)
}
