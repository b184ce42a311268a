package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/tenantry/tenantry/internal/demo"
)

func demoCommand() command {
	return command{
		name:    "demo",
		summary: "start two local throwaway shards and show tenant isolation step by step",
		run: func(ctx context.Context, args []string, stdout io.Writer) error {
			fs := flag.NewFlagSet("demo", flag.ContinueOnError)
			keep := fs.Bool("keep", false, "leave the clusters running until Ctrl-C and print how to connect")
			if err := fs.Parse(args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return fmt.Errorf("demo: unexpected arguments %q: demo takes no arguments, only flags", fs.Args())
			}
			return demo.Run(ctx, stdout, demo.Options{Keep: *keep})
		},
	}
}
