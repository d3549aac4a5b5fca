package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set by the linker (see the Makefile's LDFLAGS):
//
//	-X main.version=v1.2.3 -X main.commit=abc123 -X main.date=2026-12-04T21:00:00Z
//
// Empty values fall back to the module build info (runtime/debug).
var (
	version = ""
	commit  = ""
	date    = ""
)

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

// exitCodesHelp ends `talos --help`.
const exitCodesHelp = `Exit codes:
  0  success
  1  a negative answer: the key is not valid, not found, not imported
  2  usage: unknown command or flag, bad arguments or flag values
  3  the server or the transport failed: unreachable, TLS, timeout, HTTP 5xx
  4  authentication or permission refused: HTTP 401/403 (pass --token or set TALOS_ADMIN_TOKEN)`

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
		Long:          "Talos issues, verifies, rotates, imports and revokes API keys.\n\n" + exitCodesHelp,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("talos {{.Version}}\n")
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExit(exitUsage, err) })
	root.AddCommand(newServeCmd(e), newProxyCmd(e), newMigrateCmd(e), newConfigCmd(e), newVersionCmd(e), newKeysCmd(e), newJWKCmd(e), newTokenCmd(e), newInjectCmd(e))
	root.AddCommand(newBackupCmds(e)...)
	ran := false
	strictTree(root, &ran)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !ran {
		// cobra refused the command line before any command ran: an
		// unknown command or flag, wrong arguments, a missing required
		// flag.
		var ee *exitError
		if !errors.As(err, &ee) {
			err = withExit(exitUsage, err)
		}
		return withExit(exitUsage, fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath()))
	}
	return err
}

// strictTree makes every group command (one with subcommands and no action
// of its own) refuse unknown subcommands and stray arguments with a usage
// error, where cobra would print the help and exit 0. It also records in
// ran whether a command's own RunE started, so that runEnv can tell
// cobra's refusals (usage errors) from the command's errors.
func strictTree(c *cobra.Command, ran *bool) {
	if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		}
	}
	if c.RunE != nil {
		inner := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return inner(cmd, args)
		}
	}
	for _, s := range c.Commands() {
		strictTree(s, ran)
	}
}

// unknownCommand is the usage error for `talos keys lst`, with cobra's
// suggestions.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return withExit(exitUsage, fmt.Errorf("%s\nRun '%s --help' for usage.", msg, cmd.CommandPath()))
}

// buildInfo is what `talos version` prints.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func newVersionCmd(e *env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			bi := currentBuild()
			switch format {
			case "json", "json-pretty":
				b, err := json.MarshalIndent(bi, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%s\n", b)
				return err
			case "table", "text", "":
				_, err := fmt.Fprintf(e.stdout, "talos %s\n  commit:   %s\n  built:    %s\n  go:       %s\n  platform: %s\n",
					bi.Version, bi.Commit, bi.Date, bi.GoVersion, bi.Platform)
				return err
			}
			return withExit(exitUsage, fmt.Errorf("invalid --format %q: want text or json", format))
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "text", "output format: text or json")
	return cmd
}

// currentBuild is the linker's values, else the module build info's (VCS
// stamp of `go build` in a checkout), else "unknown".
func currentBuild() buildInfo {
	bi := buildInfo{Version: buildVersion(), Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	dirty := false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && bi.Commit == "":
				bi.Commit = s.Value
			case s.Key == "vcs.time" && bi.Date == "":
				bi.Date = s.Value
			case s.Key == "vcs.modified":
				dirty = s.Value == "true" && commit == ""
			}
		}
	}
	if dirty && bi.Commit != "" {
		bi.Commit += "-dirty"
	}
	if bi.Commit == "" {
		bi.Commit = "unknown"
	}
	if bi.Date == "" {
		bi.Date = "unknown"
	}
	return bi
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
