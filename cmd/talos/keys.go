package main

import "github.com/spf13/cobra"

func newKeysCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "keys", Short: "Manage API keys through the admin API"}
}
