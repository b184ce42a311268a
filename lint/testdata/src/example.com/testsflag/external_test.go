package testsflag_test

import (
	"context"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

func TestExternal(t *testing.T) { // want TestExternal:"reaches tenancy.Unscoped"
	_ = tenancy.Unscoped(context.Background(), "test") // want `tenancy.Unscoped used in package example.com/testsflag_test`
}
