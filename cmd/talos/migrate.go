package main

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/pkg/config"
)

func newMigrateCmd(e *env) *cobra.Command {
	var files []string
	var database string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Manage the database schema",
		Long: `Manage the database schema. Only the database is needed: --database, or db.dsn
from --config files and TALOS_DB_DSN (no issuer or HMAC secret).

Exit codes: 0 done; 1 refused with nothing changed (down over an irreversible
migration, force of an unknown version) or, for status --check, migrations
pending; 2 bad usage or configuration; 3 the database failed.`,
	}
	cmd.PersistentFlags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON); repeatable")
	cmd.PersistentFlags().StringVar(&database, "database", "", "database DSN (overrides db.dsn)")
	// dsn is --database or db.dsn, with the store package of its scheme.
	dsn := func() (string, backend, error) {
		d := database
		if d == "" {
			cfg, err := config.LoadDB(files, e.vars)
			if err != nil {
				return "", backend{}, withExit(exitUsage, err)
			}
			d = cfg.DB.DSN.Value()
		}
		b, err := backendFor(d)
		return d, b, withExit(exitUsage, err)
	}
	// dbErr marks an error of the database: a refusal (nothing changed) is a
	// negative answer, anything else a failure of the database.
	dbErr := func(err error) error {
		if errors.Is(err, migrate.ErrRefused) {
			return withExit(exitNegative, err)
		}
		return withExit(exitServer, err)
	}
	list := func(verb string, ms []migrate.Migration) error {
		for _, m := range ms {
			if _, err := fmt.Fprintf(e.stdout, "%s %04d_%s\n", verb, m.Version, m.Name); err != nil {
				return err
			}
		}
		return nil
	}

	var check bool
	status := &cobra.Command{
		Use:   "status",
		Short: "List applied and pending migrations (read-only)",
		Long: `List applied and pending migrations. It only reads: it creates no database
file, schema or bookkeeping table. With --check it exits 1 when a migration is
pending, to gate a rollout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, b, err := dsn()
			if err != nil {
				return err
			}
			sts, err := b.status(cmd.Context(), d)
			if err != nil {
				return dbErr(err)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tNAME\tSTATUS\tAPPLIED AT")
			pending := 0
			for _, s := range sts {
				state, at := "pending", ""
				if s.Applied {
					state, at = "applied", s.AppliedAt.Format(time.RFC3339)
				}
				if s.Unknown {
					state = "applied (unknown to this release: a newer one migrated this database)"
				}
				if !s.Applied {
					pending++
				}
				fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", s.Version, s.Name, state, at)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if check && pending > 0 {
				return withExit(exitNegative, fmt.Errorf("%s pending; run `talos migrate up`", migrations(pending)))
			}
			return nil
		},
	}
	status.Flags().BoolVar(&check, "check", false, "exit 1 when a migration is pending")

	var steps int
	down := &cobra.Command{
		Use:   "down",
		Short: "Reverse the last applied migrations",
		Long: `Reverse the last --steps applied migrations, newest first. Every one of them
must have a down step; otherwise nothing is changed and the error names the
first that cannot be reversed (restore a backup taken before it instead).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if steps < 1 {
				return withExit(exitUsage, fmt.Errorf("--steps must be at least 1 (got %d)", steps))
			}
			d, b, err := dsn()
			if err != nil {
				return err
			}
			rev, err := b.down(cmd.Context(), d, steps)
			if lerr := list("Reversed", rev); lerr != nil {
				return errors.Join(lerr, err)
			}
			if err != nil {
				return dbErr(err)
			}
			_, err = fmt.Fprintf(e.stdout, "%s reversed.\n", migrations(len(rev)))
			return err
		},
	}
	down.Flags().IntVar(&steps, "steps", 1, "how many migrations to reverse")

	var yes bool
	force := &cobra.Command{
		Use:   "force VERSION",
		Short: "Set the recorded schema version without running any migration",
		Long: `Set the recorded schema version without running any migration: afterwards the
migrations up to VERSION are recorded as applied and none above it. It is the
way out of a migration that failed halfway (MySQL commits DDL as it goes):
repair the schema by hand, then force the version it is at. 0 records none.
Needs --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 0 {
				return withExit(exitUsage, fmt.Errorf("VERSION must be a migration version (a number, 0 for none), got %q", args[0]))
			}
			if !yes {
				return withExit(exitUsage, fmt.Errorf("force rewrites the migration record without running anything; rerun with --yes to set version %d", v))
			}
			d, b, err := dsn()
			if err != nil {
				return err
			}
			if err := b.force(cmd.Context(), d, v); err != nil {
				return dbErr(err)
			}
			_, err = fmt.Fprintf(e.stdout, "Recorded schema version %d.\n", v)
			return err
		},
	}
	force.Flags().BoolVar(&yes, "yes", false, "confirm rewriting the migration record")

	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply all pending migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, b, err := dsn()
			if err != nil {
				return err
			}
			applied, err := b.up(cmd.Context(), d)
			if lerr := list("Applied", applied); lerr != nil {
				return errors.Join(lerr, err)
			}
			if err != nil {
				return dbErr(err)
			}
			if len(applied) == 0 {
				_, err = fmt.Fprintln(e.stdout, "Database schema is up to date.")
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s applied.\n", migrations(len(applied)))
			return err
		},
	}, status, down, force)
	return cmd
}

// migrations is "1 migration" or "n migrations".
func migrations(n int) string {
	if n == 1 {
		return "1 migration"
	}
	return strconv.Itoa(n) + " migrations"
}
