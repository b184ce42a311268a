package testsflag

import (
	"context"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

func TestReported(t *testing.T) { // want TestReported:"reaches tenancy.Unscoped"
	_ = tenancy.Unscoped(context.Background(), "test") // want `tenancy.Unscoped used in package example.com/testsflag`
}
