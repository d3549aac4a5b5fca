package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/deploy/inject"
	listenlimits "github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/telemetry"
	"github.com/talos-project/talos/pkg/tlsconf"
)

// newInjectCmd is talos inject (offline, like istioctl kube-inject) and
// talos inject serve (the mutating admission webhook).
func newInjectCmd(e *env) *cobra.Command {
	var cfgFile, file string
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Add the talos-proxy sidecar to the pods and pod templates of Kubernetes YAML (-f FILE, or - for stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile == "" || file == "" {
				return errors.New("inject: --config and -f are required")
			}
			in, err := newInjector(cfgFile)
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			return in.Transform(r, e.stdout)
		},
	}
	cmd.Flags().StringVarP(&cfgFile, "config", "c", "", "injector config file (YAML)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest to inject, - for standard input")
	cmd.AddCommand(newInjectServeCmd(e))
	return cmd
}

func newInjectServeCmd(e *env) *cobra.Command {
	var (
		cfgFile, listen, certFile, keyFile, logLevel string
		drainDelay, shutdownTimeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the sidecar injector: a mutating admission webhook (HTTPS, POST /inject)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			log := telemetry.NewLogger(e.stderr, level, "json")
			in, err := newInjector(cfgFile)
			if err != nil {
				return err
			}
			srvTLS, err := tlsconf.NewServer(tlsconf.ServerOptions{
				CertFile: certFile, KeyFile: keyFile, Logger: log.With(slog.String("tls", "injector")),
			})
			if err != nil {
				return err
			}
			ln, err := listenlimits.Listen(cmd.Context(), listen, inject.MaxConnections)
			if err != nil {
				return err
			}
			srv, err := inject.NewServer(inject.NewHandler(in, log), inject.ServerOptions{
				Listener: ln, TLS: srvTLS.Config("h2", "http/1.1"), Logger: log,
				DrainDelay: drainDelay, ShutdownTimeout: shutdownTimeout,
			})
			if err != nil {
				ln.Close()
				return err
			}
			log.Info("Starting Talos injector", slog.String("version", buildVersion()))
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&cfgFile, "config", "c", "/etc/talos-injector/injector.yaml", "injector config file (YAML)")
	cmd.Flags().StringVar(&listen, "listen", ":8443", "HTTPS listen address")
	cmd.Flags().StringVar(&certFile, "tls-cert-file", "", "PEM certificate chain (re-read when it changes)")
	cmd.Flags().StringVar(&keyFile, "tls-key-file", "", "PEM private key")
	cmd.Flags().DurationVar(&drainDelay, "drain-delay", 5*time.Second, "on SIGTERM, keep serving this long with /health/ready failing")
	cmd.Flags().DurationVar(&shutdownTimeout, "shutdown-timeout", 10*time.Second, "then wait this long for reviews in flight")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func newInjector(cfgFile string) (*inject.Injector, error) {
	cfg, err := inject.LoadConfig(cfgFile)
	if err != nil {
		return nil, err
	}
	return inject.New(cfg, buildVersion())
}
