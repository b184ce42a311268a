// Command tenantctl operates a tenantry fleet. Today it has one command:
//
//	tenantctl demo [-keep]
//
// which starts two throwaway PostgreSQL shards, provisions tenants and shows
// their isolation step by step. Fleet commands (tenants, migrate, shards,
// backup, move) come with the registry.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/tenantry/tenantry/internal/demo"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tenantctl:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: tenantctl COMMAND [flags]

commands:
  demo    start two local throwaway shards and show tenant isolation step by step
          -keep  leave the clusters running until Ctrl-C and print how to connect
`)
}

func run(args []string) error {
	if len(args) == 0 {
		usage()
		return fmt.Errorf("no command")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch args[0] {
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		keep := fs.Bool("keep", false, "leave the clusters running until Ctrl-C")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return demo.Run(ctx, os.Stdout, demo.Options{Keep: *keep})
	case "help", "-h", "--help":
		usage()
		return nil
	default:
		usage()
		return fmt.Errorf("unknown command %q", args[0])
	}
}
