// Package fixes checks the suggested fix of rule 3: use the function's
// context parameter instead of context.Background()/TODO().
package fixes

import (
	"context"

	"example.com/app/ent"
)

func list(ctx context.Context, c *ent.Client) {
	_, _ = c.Order.Query().All(context.Background()) // want `context.Background\(\) carries no tenant`
	_, _ = c.Order.Query().Count(context.TODO())     // want `context.TODO\(\) carries no tenant`
	go func() {
		_, _ = c.Order.Query().All(context.Background()) // want `carries no tenant`
	}()
}

// No fix: no context parameter, two of them, or the parameter is shadowed.
func noParam(c *ent.Client) {
	_, _ = c.Order.Query().All(context.Background()) // want `carries no tenant`
}

func twoParams(a, b context.Context, c *ent.Client) {
	_, _ = c.Order.Query().All(context.Background()) // want `carries no tenant`
}

func shadowed(ctx context.Context, c *ent.Client) {
	{
		ctx := 1
		_ = ctx
		_, _ = c.Order.Query().All(context.Background()) // want `carries no tenant`
	}
}
