package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/pkg/config"
)

func newMigrateCmd(e *env) *cobra.Command {
	var files []string
	var database string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Manage the database schema",
	}
	cmd.PersistentFlags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON)")
	cmd.PersistentFlags().StringVar(&database, "database", "", "database DSN (overrides db.dsn)")
	// dsn is --database or db.dsn, with the store package of its scheme.
	dsn := func() (string, backend, error) {
		d := database
		if d == "" {
			cfg, err := config.Load(files, e.vars)
			if err != nil {
				return "", backend{}, err
			}
			if err := cfg.RequireDSN(); err != nil {
				return "", backend{}, err
			}
			d = cfg.DB.DSN.Value()
		}
		b, err := backendFor(d)
		return d, b, err
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply all pending migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, b, err := dsn()
			if err != nil {
				return err
			}
			if err := b.migrate(cmd.Context(), d); err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, "Database schema is up to date.")
			return err
		},
	}, &cobra.Command{
		Use:   "status",
		Short: "List applied and pending migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, b, err := dsn()
			if err != nil {
				return err
			}
			sts, err := b.status(cmd.Context(), d)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tNAME\tSTATUS")
			for _, s := range sts {
				state := "pending"
				if s.Applied {
					state = "applied"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", s.Version, s.Name, state)
			}
			return tw.Flush()
		},
	})
	return cmd
}
