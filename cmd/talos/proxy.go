package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	goredis "github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	listenlimits "github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/telemetry"
	"github.com/talos-project/talos/sidecar"
	"github.com/talos-project/talos/sidecar/invalidation"
	"github.com/talos-project/talos/sidecar/pipeline"
	"github.com/talos-project/talos/sidecar/upstream"
)

func newProxyCmd(e *env) *cobra.Command {
	var (
		files    []string
		upstream string
		printCfg bool
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the sidecar: Envoy ext_authz (gRPC), HTTP authorization and a caching verify proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadProxy(files, e.vars)
			if err != nil {
				return err
			}
			if upstream != "" {
				cfg.Proxy.Upstream = upstream
				if err := cfg.ValidateProxy(); err != nil {
					return err
				}
			}
			if printCfg {
				return printConfig(e, cfg)
			}
			log := telemetry.NewLogger(e.stderr, cfg.Log.Level.Slog(), string(cfg.Log.Format))
			for _, w := range cfg.Warnings {
				log.Warn("configuration warning", slog.String("warning", w))
			}
			log.Info("Starting Talos proxy", slog.String("version", buildVersion()), slog.String("upstream", cfg.Proxy.Upstream))
			srv, closeProxy, err := buildProxy(cmd.Context(), cfg.Proxy, log, e.hurry)
			if err != nil {
				return err
			}
			defer closeProxy()
			warnExposed(log, proxyListeners(cfg.Proxy))
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON); repeatable")
	cmd.Flags().StringVar(&upstream, "upstream", "", "control plane gRPC address (overrides proxy.upstream)")
	cmd.Flags().BoolVar(&printCfg, "print-config", false, "print the effective configuration as YAML (secrets <redacted>) and exit")
	return cmd
}

// proxyTransport is the transport security of a sidecar's links; nil
// fields are plaintext.
type proxyTransport struct {
	// Upstream secures the one connection to the control plane (the
	// Verifier calls and the invalidation stream): proxy.upstream_tls.
	Upstream credentials.TransportCredentials
	// Redis dials the shared cache's connections over TLS.
	Redis func(ctx context.Context, network, addr string) (net.Conn, error)
	// ExtAuthz, HTTP and Metrics are the listeners' server configurations.
	ExtAuthz, HTTP, Metrics *tls.Config
	// hurry cuts the drain delay short (see env); nil never does.
	hurry <-chan struct{}
}

// buildProxy assembles a sidecar from its configuration, its links secured
// as the tls blocks say; hurry cuts its drain short (see env). The returned
// func releases what it holds.
func buildProxy(ctx context.Context, pc config.Proxy, log *slog.Logger, hurry <-chan struct{}) (*sidecar.Server, func(), error) {
	// Before anything is opened or dialled.
	if err := extauthz.CheckHTTPPathPrefix(pc.HTTPPathPrefix); err != nil {
		return nil, func() {}, fmt.Errorf("proxy.http_path_prefix %q: %w", pc.HTTPPathPrefix, err)
	}
	tr, err := proxyTLS(pc, log)
	if err != nil {
		return nil, func() {}, err
	}
	tr.hurry = hurry
	return buildProxyWith(ctx, pc, log, tr)
}

// proxyTLS loads the certificates of the sidecar's tls blocks.
func proxyTLS(pc config.Proxy, log *slog.Logger) (proxyTransport, error) {
	var (
		tr  proxyTransport
		err error
	)
	if tr.ExtAuthz, err = listenerTLS("proxy.extauthz.tls", pc.ExtAuthz.TLS, log, "h2"); err != nil {
		return tr, err
	}
	if tr.HTTP, err = listenerTLS("proxy.http.tls", pc.HTTP.TLS, log, "h2", "http/1.1"); err != nil {
		return tr, err
	}
	if tr.Metrics, err = listenerTLS("proxy.metrics.tls", pc.Metrics.TLS, log, "h2", "http/1.1"); err != nil {
		return tr, err
	}
	up, err := linkTLS("proxy.upstream_tls", pc.UpstreamTLS, log)
	if err != nil {
		return tr, err
	}
	if up != nil {
		tr.Upstream = up.TransportCredentials()
	}
	redisTLS, err := linkTLS("proxy.cache.redis.tls", pc.Cache.Redis.TLS, log)
	if err != nil {
		return tr, err
	}
	if redisTLS != nil {
		// Every new connection dials with the current files.
		tr.Redis = redisTLS.DialContext
	}
	return tr, nil
}

// buildProxyWith is buildProxy with the transport security of tr.
func buildProxyWith(ctx context.Context, pc config.Proxy, log *slog.Logger, tr proxyTransport) (*sidecar.Server, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*sidecar.Server, func(), error) {
		closeAll()
		return nil, func() {}, err
	}

	up, err := upstream.New(upstream.Options{
		Addr: pc.Upstream, Token: pc.UpstreamToken.Value(), Timeout: pc.UpstreamTimeout.D(),
		Retries: pc.UpstreamRetries, TransportCredentials: tr.Upstream, Logger: log,
	})
	if err != nil {
		return fail(fmt.Errorf("proxy upstream: %w", err))
	}
	closers = append(closers, func() { up.Close() })

	var (
		shared      cache.Store
		redisClient goredis.UniversalClient
	)
	if r := pc.Cache.Redis; r.Enabled {
		redis.SetLogger(log)
		o := redis.Options{
			Addrs: r.Addrs, Password: r.Password.Value(), DB: r.DB, PoolSize: r.PoolSize, MinIdleConns: r.MinIdleConns,
			Timeout: r.Timeout.D(), ConnMaxIdleTime: r.ConnMaxIdleTime.D(), ConnMaxLifetime: r.ConnMaxLifetime.D(),
			DialTLS: tr.Redis, KeyPrefix: r.KeyPrefix,
		}
		st, err := redis.New(o)
		if err != nil {
			return fail(fmt.Errorf("proxy.cache.redis: %w", err))
		}
		closers = append(closers, func() { st.Close() })
		shared = st
		if pc.RateLimit.Enabled && pc.RateLimit.Backend == config.RateLimitBackendRedis {
			// The limiter's own connections to the same Redis: a slow
			// limiter call never holds a cache connection, nor the other way.
			if redisClient, err = limiterRedisClient(o); err != nil {
				return fail(fmt.Errorf("proxy.rate_limit: %w", err))
			}
			closers = append(closers, func() { _ = redisClient.Close() })
		}
	}

	pl, err := pipeline.New(up, pipeline.Options{
		TTL: pc.Cache.TTL.D(), NegativeTTL: pc.Cache.NegativeTTL.D(), StaleIfError: pc.StaleIfError.D(),
		CheckTimeout: pc.CheckTimeout.D(), MemoryBytes: pc.Cache.Memory.MaxSize,
		Shared: shared, SharedSecret: []byte(pc.Cache.Redis.Secret.Value()), Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, pl.Close)

	registry := telemetry.NewRegistry()
	if err := pl.Register(registry); err != nil {
		return fail(err)
	}
	runners := []sidecar.Runner{pl}
	var stream *invalidation.Client
	if pc.Invalidation.Enabled {
		// The stream shares the upstream's connection, its TLS and its
		// token; up closes it.
		stream, err = invalidation.New(pl, invalidation.Options{
			Conn: up.Conn(), MaxStaleness: pc.Invalidation.MaxStaleness.D(), Logger: log,
		})
		if err != nil {
			return fail(fmt.Errorf("proxy invalidation: %w", err))
		}
		closers = append(closers, func() { stream.Close() })
		pl.UseStream(stream.Fresh)
		stream.OnResync(pl.Resync)
		if err := stream.RegisterMetrics(registry); err != nil {
			return fail(err)
		}
		runners = append(runners, stream)
	} else {
		log.Warn("proxy.invalidation is disabled: a revoked key passes this sidecar until its cache entry expires (proxy.cache.ttl)")
	}
	var limiter ratelimit.Limiter
	if rl := pc.RateLimit; rl.Enabled {
		l, err := sidecar.NewRateLimiter(sidecar.RateLimitOptions{
			Backend: string(rl.Backend), Redis: redisClient, KeyPrefix: rl.Redis.KeyPrefix,
			Timeout: pc.Cache.Redis.Timeout.D(), MaxKeys: rl.Memory.MaxKeys,
			Fallback: rl.Fallback == config.ProxyRateLimitFallbackMemory,
			Registry: registry, Logger: log,
		})
		if err != nil {
			return fail(fmt.Errorf("proxy.rate_limit: %w", err))
		}
		limiter = l
	}
	decisions := sidecar.NewDecisionMetrics(registry)
	tenant := credential.Tenant(pc.Tenant)
	if tenant == "" {
		tenant = credential.DefaultTenant
	}
	az, err := extauthz.New(pl, extauthz.Options{
		CredentialHeaders:  pc.CredentialHeaders,
		ClientIPHeaders:    pc.ClientIPHeaders,
		HeaderPrefix:       pc.Headers.Prefix,
		MetadataHeaders:    pc.Headers.Metadata,
		RemoveCredential:   pc.Headers.RemoveCredential,
		Tenant:             tenant,
		HTTPPathPrefix:     pc.HTTPPathPrefix,
		UnavailableAsError: pc.FailureMode == config.ProxyFailureModeUnavailable,
		Observe:            decisions.Observe,
		RateLimiter:        limiter,
		// A limiter that cannot decide fails open by default, as Talos.
		RateLimitFailClosed:  pc.RateLimit.FailureMode == config.RateLimitFailClosed,
		OmitRateLimitHeaders: !pc.RateLimit.Headers,
		CostHeader:           costHeader(pc.RateLimit),
		Logger:               log,
	})
	if err != nil {
		return fail(err)
	}
	srv, err := sidecar.New(ctx, sidecar.Config{
		ExtAuthzAddr: pc.ExtAuthz.Addr(), HTTPAddr: pc.HTTP.Addr(), MetricsAddr: pc.Metrics.Addr(),
		ExtAuthzTLS: tr.ExtAuthz, HTTPTLS: tr.HTTP, MetricsTLS: tr.Metrics,
		ExtAuthzReflection: pc.ExtAuthz.ReflectionOn(),
		Limits:             listenlimits.Limits{MaxConnections: pc.Limits.MaxConnections, MaxConcurrentStreams: uint32(pc.Limits.MaxConcurrentStreams), MaxRecvMsgSize: pc.Limits.MaxMessageBytes},
		Shutdown:           listenlimits.Shutdown{DrainDelay: pc.Shutdown.DrainDelay.D(), Timeout: pc.Shutdown.Timeout.D(), Hurry: tr.hurry},
		WaitForUpstream:    pc.Readiness.WaitForUpstream,
	}, sidecar.Deps{ExtAuthz: az, Upstream: up, Stream: streamState(stream), Runners: runners, Logger: log, Registry: registry})
	if err != nil {
		return fail(err)
	}
	return srv, closeAll, nil
}

// limiterRedisClient is a client of a Redis for a rate limiter, set up as
// the cache's (redis.ClientOptions) but never retrying a command: a limiter
// call retried after a lost answer could be charged twice.
func limiterRedisClient(o redis.Options) (goredis.UniversalClient, error) {
	u, err := redis.ClientOptions(o)
	if err != nil {
		return nil, err
	}
	u.MaxRetries = -1
	return goredis.NewUniversalClient(u), nil
}

// costHeader is the cost header of HTTP-mode checks: only with rate
// limiting on, where a cost means something.
func costHeader(rl config.ProxyRateLimit) string {
	if !rl.Enabled {
		return ""
	}
	return rl.CostHeader
}

// streamState is the stream for the health endpoint; nil when disabled (a
// nil *invalidation.Client must not become a non-nil interface).
func streamState(c *invalidation.Client) sidecar.Stream {
	if c == nil {
		return nil
	}
	return c
}
