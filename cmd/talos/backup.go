package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/config"
)

// newBackupCmds returns `talos backup` and `talos restore`.
func newBackupCmds(e *env) []*cobra.Command {
	var (
		files []string
		force bool
	)
	backup := &cobra.Command{
		Use:   "backup OUT",
		Short: "Write a consistent copy of the live SQLite database to OUT (the server may keep running)",
		Long: "Write a consistent copy of the SQLite database of db.dsn to OUT with VACUUM INTO, while the server runs:\n" +
			"unlike a copy of the file, it includes the transactions still in the write-ahead log. OUT is written to a\n" +
			"temporary file and renamed, and never replaced without --force. For PostgreSQL and MySQL use pg_dump or\n" +
			"mysqldump (docs/operations.md). Keep the HMAC secret with every backup: without it the keys in it verify\n" +
			"nowhere and its signing keys stay sealed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := backupConfig(e, files)
			if err != nil {
				return err
			}
			if err := sqlite.Backup(cmd.Context(), cfg.DB.DSN.Value(), args[0], force); err != nil {
				return withExit(backupExit(err), err)
			}
			_, err = fmt.Fprintf(e.stdout, "Backed up the database to %s. Keep it with the HMAC secret (secrets.hmac) and the config.\n", args[0])
			return err
		},
	}
	restore := &cobra.Command{
		Use:   "restore IN",
		Short: "Replace the SQLite database with the backup IN, after checking it (stop the server first)",
		Long: "Replace the SQLite database of db.dsn with the backup IN. Stop every server on the database first.\n" +
			"Before anything is replaced, IN must be a Talos database at this release's schema version, and the\n" +
			"configured HMAC secret (secrets.hmac) must open the signing keys sealed in it: a backup restored under\n" +
			"another secret would verify no key. An existing database is replaced only with --force.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := backupConfig(e, files)
			if err != nil {
				return err
			}
			secrets, err := secretSet(cfg)
			if err != nil {
				return withExit(exitUsage, err)
			}
			var opened int
			check := func(ctx context.Context, st store.Store) error {
				n, err := keys.CheckSigningKeys(ctx, st, secrets, time.Now())
				if errors.Is(err, keys.ErrSecretMismatch) {
					return fmt.Errorf("the configured HMAC secret does not match the backup (%w): restore with the secrets.hmac the backup was made under; nothing was replaced", err)
				}
				opened = n
				return err
			}
			if err := sqlite.Restore(cmd.Context(), args[0], cfg.DB.DSN.Value(), force, check); err != nil {
				return withExit(backupExit(err), err)
			}
			if opened == 0 {
				fmt.Fprintln(e.stderr, "warning: the backup holds no generated signing keys, so the HMAC secret could not be checked against it")
			}
			_, err = fmt.Fprintf(e.stdout, "Restored %s (%d signing keys opened with the configured HMAC secret). Start the server.\n", args[0], opened)
			return err
		},
	}
	for _, c := range []*cobra.Command{backup, restore} {
		c.Flags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON)")
		c.Flags().BoolVar(&force, "force", false, "replace an existing file")
	}
	return []*cobra.Command{backup, restore}
}

// backupConfig loads the configuration and refuses every backend but SQLite,
// whose backups are the database's own tools'.
func backupConfig(e *env, files []string) (config.Config, error) {
	cfg, err := config.Load(files, e.vars)
	if err != nil {
		return cfg, withExit(exitUsage, err)
	}
	if err := cfg.RequireDSN(); err != nil {
		return cfg, withExit(exitUsage, err)
	}
	switch d := cfg.DB.Driver(); d {
	case config.DriverSQLite:
		return cfg, nil
	case config.DriverPostgres, config.DriverCockroach:
		return cfg, withExit(exitUsage, errors.New("talos backup and restore handle SQLite only: back up PostgreSQL and CockroachDB with pg_dump / pg_restore (or CockroachDB's BACKUP), and keep secrets.hmac and the config with every dump (docs/operations.md)"))
	case config.DriverMySQL:
		return cfg, withExit(exitUsage, errors.New("talos backup and restore handle SQLite only: back up MySQL with mysqldump --single-transaction, and keep secrets.hmac and the config with every dump (docs/operations.md)"))
	}
	return cfg, withExit(exitUsage, fmt.Errorf("database scheme %q is not supported", dsnScheme(cfg.DB.DSN.Value())))
}

// backupExit is the exit code of a failed backup or restore: a refusal
// (file exists, not a Talos backup, wrong secret) is a negative answer;
// anything else a failure of the database or the filesystem.
func backupExit(err error) int {
	switch {
	case errors.Is(err, sqlite.ErrExists), errors.Is(err, sqlite.ErrNotTalos), errors.Is(err, keys.ErrSecretMismatch):
		return exitNegative
	}
	return exitServer
}
