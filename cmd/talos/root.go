package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set by the linker (-X main.version=...); otherwise the module
// build info is used.
var version = ""

// usageError marks errors cobra has already printed with usage.
type usageError struct{ error }

// env is the process environment handed to run, so that tests control it.
type env struct {
	vars   []string
	stdout io.Writer
	stderr io.Writer
	// hurry is closed on a second SIGTERM/SIGINT (the first ends the
	// context): serve and proxy cut their drain delay short. Nil never
	// closes.
	hurry <-chan struct{}
}

// run is the whole program, testable: args without the program name, the
// environment as KEY=VALUE pairs, and the output streams.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	return runEnv(ctx, args, &env{vars: environ, stdout: stdout, stderr: stderr})
}

// runEnv is run with the whole env, hurry included.
func runEnv(ctx context.Context, args []string, e *env) error {
	root := &cobra.Command{
		Use:           "talos",
		Short:         "Talos issues, verifies, rotates, imports and revokes API keys",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddCommand(newServeCmd(e), newProxyCmd(e), newMigrateCmd(e), newConfigCmd(e), newVersionCmd(e), newKeysCmd(e), newJWKCmd(e), newTokenCmd(e), newInjectCmd(e))
	return root.ExecuteContext(ctx)
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(e.stdout, "talos", buildVersion())
			return err
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}
