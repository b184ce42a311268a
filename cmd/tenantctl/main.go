// Command tenantctl operates a tenantry fleet: provisioning, migrations,
// throttling and lifecycle operations per tenant, across shards.
//
//	tenantctl demo [-keep]
//
// starts two throwaway PostgreSQL shards, provisions tenants and shows their
// isolation step by step. Run tenantctl without arguments for the list of
// commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
)

// command is one tenantctl subcommand. Each lives in its own file.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands lists every subcommand; add one line per new command.
func commands() []command {
	return []command{
		demoCommand(),
		topCommand(),
		tenantsCommand(),
		shardsCommand(),
		migrateCommand(),
		benchCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tenantctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	usage := func() {
		fmt.Fprintln(stderr, "usage: tenantctl COMMAND [flags]\n\ncommands:")
		for _, c := range cmds {
			fmt.Fprintf(stderr, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stderr, "\nRun tenantctl COMMAND -h for a command's flags.")
	}
	if len(args) == 0 {
		usage()
		return fmt.Errorf("no command given")
	}
	switch args[0] {
	case "help", "-h", "--help":
		usage()
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout)
			if errors.Is(err, flag.ErrHelp) { // -h: the flag set printed its usage
				return nil
			}
			return err
		}
	}
	usage()
	return fmt.Errorf("unknown command %q", args[0])
}

// isHelp reports whether a subcommand argument asks for usage.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }
