package gen_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"entgo.io/ent/entc"
	entgen "entgo.io/ent/entc/gen"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/gen"
)

func TestUnsafeSchemasFailGeneration(t *testing.T) {
	target := t.TempDir()
	err := entc.Generate("./testdata/unsafe/schema",
		&entgen.Config{Target: target, Package: "github.com/tenantry/tenantry/gen/testdata/unsafe/ent"},
		entc.Extensions(gen.Extension{}))
	require.Error(t, err)
	require.True(t, errors.Is(err, gen.ErrUnsafeSchema), "error %v should wrap ErrUnsafeSchema", err)
	for _, want := range []string{
		`schema "AuditEntry" is neither tenant-scoped nor global`,
		`tenancy.Global()`,
		`schema "Invoice": field "number" is Unique() across all tenants`,
		`index.Fields("tenant_id", "number").Unique()`,
		`schema "Invoice": unique index on (ref) does not include tenant_id`,
		`schema "Invoice": many-to-many edge "labels" to tenant-scoped "Label" has no edge schema`,
		`schema "Category": many-to-many edge "documents" to tenant-scoped "Document" has no edge schema`,
		`schema "Secret" is annotated tenant-scoped but has no tenant_id field`,
		`schema "Secret" is tenant-scoped without the mixin's hook and interceptor`,
		`schema "Note": field tenant_id must be tenancy.Mixin's (an immutable, required UUID)`,
		`schema "Profile": one-to-one edge "account" gets a unique index on its foreign key`,
	} {
		require.Contains(t, err.Error(), want)
	}
	matches, _ := filepath.Glob(filepath.Join(target, "*.go"))
	require.Empty(t, matches, "nothing may be generated for an unsafe graph")
}

func TestExampleAppGraphIsSafe(t *testing.T) {
	g, err := entc.LoadGraph("../examples/app/ent/schema", &entgen.Config{})
	require.NoError(t, err)
	require.NoError(t, gen.Check(g))
}

// TestCommandExitsNonZero runs the generator command the way `go generate`
// does and checks that an unsafe graph stops it with the schema and the fix.
func TestCommandExitsNonZero(t *testing.T) {
	if testing.Short() {
		t.Log("builds the command; covered by TestUnsafeSchemasFailGeneration in -short runs")
		return
	}
	cmd := exec.Command("go", "run", "./cmd/tenantrygen",
		"-target", t.TempDir(), "-package", "github.com/tenantry/tenantry/gen/testdata/unsafe/ent",
		"./testdata/unsafe/schema")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "want a non-zero exit, got %v\n%s", err, out)
	require.True(t, strings.Contains(string(out), `schema "AuditEntry" is neither tenant-scoped nor global`), "%s", out)
}
