package tenancy_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantry/tenantry/tenancy"
)

func ExampleParseID() {
	_, err := tenancy.ParseID("42")
	fmt.Println(errors.Is(err, tenancy.ErrInvalidTenantID))
	id, _ := tenancy.ParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	fmt.Println(id.SchemaName())
	// Output:
	// true
	// tenant_7f1c2a4e9b3d4c8ea1f05d6e7f8a9b0c
}

func ExampleWithTenant() {
	id := tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	ctx := tenancy.WithTenant(context.Background(), id)
	got, ok := tenancy.FromContext(ctx)
	fmt.Println(got, ok)
	_, ok = tenancy.FromContext(context.Background())
	fmt.Println(ok)
	// Output:
	// 7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c true
	// false
}

func ExampleNewStaticResolver() {
	id := tenancy.MustParseID("7f1c2a4e-9b3d-4c8e-a1f0-5d6e7f8a9b0c")
	shard := &tenancy.Shard{Name: "shard0", Pool: nil}
	if _, err := tenancy.NewPlacement(id, shard, id.SchemaName(), tenancy.DefaultLimits); err != nil {
		fmt.Println(errors.Is(err, tenancy.ErrInvalidPlacement))
	}
	_, err := tenancy.NewStaticResolver(nil).Resolve(context.Background(), id)
	fmt.Println(errors.Is(err, tenancy.ErrUnknownTenant))
	// Output:
	// true
	// true
}

func ExampleRetryable() {
	// A write of a tenant during its move's cutover, as the driver reports it.
	moving := &tenancy.ReadOnlyError{Tenant: tenancy.MustParseID("aaaaaaaa-0000-4000-8000-00000000000a"), State: tenancy.StateMoving}
	err := fmt.Errorf("create order: %w", moving)
	if after, ok := tenancy.Retryable(err); ok {
		fmt.Println("retry in", after)
	}
	// Output: retry in 1s
}

func ExampleWithMaxSchemasPerConn() {
	var resolver tenancy.Resolver // the registry's router, or a static resolver
	// A connection that has served 2,000 schemas is replaced after its
	// statement, so that no backend keeps the catalog entries of every
	// schema of a shard of many thousands.
	drv := tenancy.NewDriver(resolver, tenancy.WithMaxSchemasPerConn(2000))
	_ = drv
}
