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
talos serve would (talos proxy with --proxy), print the warnings, and exit:
0 when the configuration is valid, 2 on any error. It opens no database and
binds no port.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			load := config.Load
			if proxy {
				load = config.LoadProxy
			}
			cfg, err := load(files, e.vars)
			if err != nil {
				return withExit(exitUsage, fmt.Errorf("configuration is invalid:\n%w", err))
			}
			for _, w := range cfg.Warnings {
				if _, err := fmt.Fprintln(e.stdout, "warning:", w); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(e.stdout, "configuration is valid (%d warnings)\n", len(cfg.Warnings))
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
