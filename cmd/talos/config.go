package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/pkg/config"
)

func newConfigCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration",
	}
	var (
		files []string
		proxy bool
	)
	check := &cobra.Command{
		Use:   "check",
		Short: "Load the config files and the environment as serve (or proxy) would, and report",
		Long: `Load the --config files and the TALOS_ environment variables exactly as
talos serve would (talos proxy with --proxy), print the warnings (those serve
logs at startup, keys not supported yet included), and exit:
0 when the configuration is valid, 2 on any error. It opens no database and
binds no port.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			load := config.Load
			if proxy {
				load = config.LoadProxy
			}
			cfg, err := load(files, e.vars)
			if err == nil && !proxy {
				err = cfg.RequireDSN() // serve refuses to start without one
			}
			if err != nil {
				return withExit(exitUsage, fmt.Errorf("configuration is invalid:\n%w", err))
			}
			warnings := cfg.Warnings
			if !proxy {
				for _, u := range cfg.Unsupported() {
					warnings = append(warnings, "configuration key not supported yet; it has no effect: "+u)
				}
			}
			for _, w := range warnings {
				if _, err := fmt.Fprintln(e.stdout, "warning:", w); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(e.stdout, "configuration is valid (%d warnings)\n", len(warnings))
			return err
		},
	}
	check.Flags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON); repeatable")
	check.Flags().BoolVar(&proxy, "proxy", false, "check as talos proxy does (the sidecar's rules)")
	cmd.AddCommand(check)
	return cmd
}

// printConfig writes cfg as YAML, every set secret shown as <redacted>, for
// --print-config.
func printConfig(e *env, cfg config.Config) error {
	b, err := cfg.RedactedYAML()
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}
