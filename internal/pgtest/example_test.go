package pgtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgtest"
)

func ExampleStart() {
	ctx := context.Background()
	c, err := pgtest.Start(ctx, pgtest.Options{Name: "example"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	conn, err := pgx.Connect(ctx, c.SuperuserDSN())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		log.Fatal(err)
	}
	fmt.Println(walLevel)
	// Output: logical
}
