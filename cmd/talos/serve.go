package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/talos-project/talos/controlplane"
	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/outbox"
	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/xds"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
	rlredis "github.com/talos-project/talos/pkg/ratelimit/redis"
	listenlimits "github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/telemetry"
	"github.com/talos-project/talos/pkg/token"
)

func newServeCmd(e *env) *cobra.Command {
	var (
		files     []string
		withProxy bool
		printCfg  bool
	)
	cmd := &cobra.Command{
		Use:       "serve [admin|public]",
		Short:     "Run the control plane (all surfaces, or only the admin or the public one)",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"admin", "public"},
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := httpapi.ModeAll
			if len(args) == 1 {
				switch args[0] {
				case "admin":
					mode = httpapi.ModeAdmin
				case "public":
					mode = httpapi.ModePublic
				default:
					return fmt.Errorf("unknown surface %q: want admin or public", args[0])
				}
			}
			if printCfg {
				cfg, err := config.Load(files, e.vars)
				if err != nil {
					return withExit(exitUsage, err)
				}
				return printConfig(e, cfg)
			}
			return serve(cmd.Context(), e, files, mode, withProxy)
		},
	}
	cmd.Flags().BoolVar(&printCfg, "print-config", false, "print the effective configuration as YAML (secrets <redacted>) and exit")
	cmd.Flags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON); repeatable")
	cmd.Flags().BoolVar(&withProxy, "with-proxy", false, "also run a sidecar (the proxy section) in this process, pointed at this control plane")
	return cmd
}

func loadConfig(e *env, files []string) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(files, e.vars)
	if err != nil {
		return cfg, nil, err
	}
	log := telemetry.NewLogger(e.stderr, cfg.Log.Level.Slog(), string(cfg.Log.Format))
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", slog.String("warning", w))
	}
	return cfg, log, nil
}

func secretSet(cfg config.Config) (*apikey.SecretSet, error) {
	var retired []apikey.Secret
	for _, r := range cfg.Secrets.HMAC.Retired {
		retired = append(retired, apikey.Secret{Value: []byte(r.Value.Value()), ExpiresAt: r.ExpiresAt})
	}
	s, err := apikey.NewSecretSet([]byte(cfg.Secrets.HMAC.Current.Value()), retired...)
	if err != nil {
		return nil, fmt.Errorf("secrets.hmac: %w", err)
	}
	return s, nil
}

// plane is the state every command that works on the database shares: the
// store and the keys service over it.
type plane struct {
	store   store.Store
	replica store.Store // nil without db.read_replica_dsn
	keys    *keys.Service
	// committed fires after every committed write of the keys service, to
	// wake the outbox tailer.
	committed *outbox.Signal
	// closers release what the plane opened besides the stores (the rate
	// limiter's Redis client).
	closers []func()
}

func (p *plane) close() {
	for _, c := range p.closers {
		c()
	}
	if p.replica != nil {
		p.replica.Close()
	}
	p.store.Close()
}

// buildPlane opens the store and builds the keys service from cfg, without
// a rate limiter (for commands that verify nothing).
func buildPlane(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool) (*plane, error) {
	return buildServingPlane(ctx, cfg, log, migrate, nil)
}

// buildServingPlane is buildPlane for talos serve. With reg, the keys' rate-limit policies are enforced on the public verify API
// when rate_limit.enabled, and the limiter's metrics go to reg; without (a
// command that verifies nothing), no limiter is built.
func buildServingPlane(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool, reg prometheus.Registerer) (*plane, error) {
	secrets, err := secretSet(cfg)
	if err != nil {
		return nil, err
	}
	signing, err := signingKeysFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.DB.DSN.Value(), migrate)
	if err != nil {
		return nil, err
	}
	p := &plane{store: st, committed: &outbox.Signal{}}
	var replica keys.VerifyReader
	if dsn := cfg.DB.ReadReplicaDSN.Value(); dsn != "" {
		// A replica is migrated by replication, never by us.
		if p.replica, err = openStore(ctx, dsn, false); err != nil {
			st.Close()
			return nil, fmt.Errorf("db.read_replica_dsn: %w", err)
		}
		replica = p.replica
	}
	ak, dt := cfg.Credentials.APIKeys, cfg.Credentials.DerivedTokens
	// Every retired issuer is passed with its expiry, which the keys service
	// evaluates at each verification (and sidecars too, through
	// GetTokenPolicy): filtering here would fix the set at start.
	retiredIssuers := make([]token.RetiredIssuer, 0, len(cfg.Credentials.IssuerRetired))
	for _, r := range cfg.Credentials.IssuerRetired {
		retiredIssuers = append(retiredIssuers, token.RetiredIssuer{Issuer: r.Value, ExpiresAt: r.ExpiresAt})
	}
	ik, rt := cfg.Credentials.ImportedKeys, cfg.Serve.SelfService.RevokeThrottle
	var (
		revokeLimiter ratelimit.Limiter
		revokePolicy  credential.RatePolicy
	)
	if rt.Enabled {
		revokeLimiter = memory.New(memory.Options{MaxKeys: rt.MaxClients})
		revokePolicy = credential.RatePolicy{Quota: rt.Burst, Window: time.Duration(rt.Burst) * rt.Interval.D(), Unit: "failures"}
	}
	var deps keys.Deps
	if reg != nil && cfg.RateLimit.Enabled {
		if err := keysLimiter(cfg, log, reg, p, &deps); err != nil {
			p.close()
			return nil, err
		}
	}
	rl := cfg.RateLimit
	svc, err := keys.New(keys.Options{
		Issuer:                cfg.Credentials.Issuer,
		Format:                keys.Format(ak.Format),
		Prefix:                ak.Prefix.Current,
		PublicPrefix:          ak.Prefix.PublicCurrent,
		RetiredPrefixes:       ak.Prefix.Retired,
		PublicRetiredPrefixes: ak.Prefix.PublicRetired,
		DefaultTTL:            ak.DefaultTTL.D(),
		MaxTTL:                ak.MaxTTL.D(),
		ClockSkew:             cfg.Credentials.ClockSkew.D(),
		KeyedImportHash:       cfg.Credentials.ImportedKeys.Hashing == config.ImportHashingHMAC,
		LastUsed: keys.LastUsedOptions{
			QueueSize:     cfg.LastUsed.QueueSize,
			FlushSize:     cfg.LastUsed.FlushSize,
			FlushInterval: cfg.LastUsed.FlushInterval.D(),
		},
		Derived: keys.DerivedOptions{
			DefaultTTL:       dt.DefaultTTL.D(),
			SigningKeys:      signing,
			CurrentKID:       dt.JWT.SigningKeyID,
			MacaroonPrefixes: append([]string{dt.Macaroon.Prefix.Current}, dt.Macaroon.Prefix.Retired...),
			RetiredIssuers:   retiredIssuers,
		},
		Imported:           keys.ImportPolicy{MinLength: ik.MinLength, MinEntropyBits: ik.MinEntropyBits, AllowWeak: ik.AllowWeak},
		SelfRevokeThrottle: revokePolicy,
		RateLimit: keys.RateLimitOptions{
			// The project has no configuration reload, so this is the
			// value at start; the service asks it on every request.
			Enabled:    func() bool { return rl.Enabled },
			FailClosed: rl.FailureMode == config.RateLimitFailClosed,
		},
	}, keys.Deps{
		Store: outbox.Notifying(st, p.committed), Replica: replica, Secrets: secrets, Logger: log, RevokeLimiter: revokeLimiter,
		Limiter: deps.Limiter, OnRateLimit: deps.OnRateLimit,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	p.keys = svc
	return p, nil
}

// keysLimiter builds the limiter of the keys' rate-limit policies
// (rate_limit.backend) into deps: memory, or Redis on cache.redis behind a
// circuit breaker without fallback, so that a dead Redis fails fast into
// rate_limit.failure_mode.
func keysLimiter(cfg config.Config, log *slog.Logger, reg prometheus.Registerer, p *plane, deps *keys.Deps) error {
	rl := cfg.RateLimit
	backend := string(rl.Backend)
	if backend == "" {
		backend = string(config.RateLimitBackendMemory)
	}
	switch config.RateLimitBackend(backend) {
	case config.RateLimitBackendMemory:
		deps.Limiter = memory.New(memory.Options{MaxKeys: rl.Memory.MaxKeys})
	case config.RateLimitBackendRedis:
		c, err := rateLimitRedis(cfg.Cache.Redis, log)
		if err != nil {
			return err
		}
		p.closers = append(p.closers, func() { _ = c.Close() })
		deps.Limiter = ratelimit.NewResilient(rlredis.New(c, rlredis.Options{KeyPrefix: rl.Redis.KeyPrefix, Timeout: cfg.Cache.Redis.Timeout.D()}), ratelimit.ResilientOptions{
			OnStateChange: func(open bool) {
				if open {
					log.Warn("rate limiter: Redis is failing; verifications follow rate_limit.failure_mode", slog.String("failure_mode", string(rl.FailureMode)))
				} else {
					log.Info("rate limiter: Redis answers again")
				}
			},
		})
	default:
		return fmt.Errorf("rate_limit.backend: unknown backend %q", backend)
	}
	obs, err := grpcapi.NewRateLimitMetrics(reg, backend)
	if err != nil {
		return err
	}
	deps.OnRateLimit = obs
	return nil
}

// rateLimitRedis is a go-redis client on cache.redis for the rate limiter
// (see limiterRedisClient).
func rateLimitRedis(r config.Redis, log *slog.Logger) (goredis.UniversalClient, error) {
	o := redis.Options{
		Addrs: r.Addrs, Password: r.Password.Value(), DB: r.DB, PoolSize: r.PoolSize, MinIdleConns: r.MinIdleConns,
		Timeout: r.Timeout.D(), ConnMaxIdleTime: r.ConnMaxIdleTime.D(), ConnMaxLifetime: r.ConnMaxLifetime.D(),
	}
	tc, err := linkTLS("cache.redis.tls", r.TLS, log)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		o.DialTLS = tc.DialContext
	}
	c, err := limiterRedisClient(o)
	if err != nil {
		return nil, fmt.Errorf("rate_limit.backend redis: cache.redis: %w", err)
	}
	return c, nil
}

func serve(ctx context.Context, e *env, files []string, mode httpapi.Mode, withProxy bool) error {
	cfg, log, err := loadConfig(e, files)
	if err != nil {
		return err
	}
	if withProxy {
		if mode == httpapi.ModePublic {
			return fmt.Errorf("--with-proxy needs the admin surface, which serve public does not run")
		}
		if err := cfg.ValidateProxy(); err != nil {
			return err
		}
	}
	log.Info("Starting Talos", slog.String("version", buildVersion()), slog.String("log_level", string(cfg.Log.Level)), slog.String("log_format", string(cfg.Log.Format)))
	for _, u := range cfg.Unsupported() {
		log.Warn("configuration key not supported yet; it has no effect", slog.String("key", u))
	}
	if err := cfg.RequireDSN(); err != nil {
		return err
	}
	registry := telemetry.NewRegistry()
	p, err := buildServingPlane(ctx, cfg, log, cfg.DB.MigrateOnStart(), registry)
	if err != nil {
		return err
	}
	defer p.close()
	log.Info("Database connected", slog.String("driver", string(cfg.DB.Driver())))
	// Load (or, on first start, generate) the signing keys now, so that a
	// broken key fails the start rather than the first derive.
	if _, err := p.keys.JWKS(ctx); err != nil {
		return err
	}

	api := grpcapi.New(grpcapi.Deps{Keys: p.keys, Logger: log, Metrics: telemetry.NewVerifyMetrics(registry)})
	// Unknown sources were already reported as configuration warnings.
	src, _ := httpapi.ParseClientIPSource(cfg.Serve.HTTP.ClientIPSource)
	auth, err := adminAuth(cfg.Serve.Admin.Auth)
	if err != nil {
		return err
	}
	if mode != httpapi.ModePublic {
		switch {
		case !auth.AdminEnforced() && auth.SidecarEnforced():
			log.Warn("ADMIN API OPEN: serve.admin.auth gives only sidecar credentials, so the sidecar protocol needs one while the admin API (issue, import, revoke, verify) answers every caller: set bearer_tokens or identities with an admin role")
		case !auth.AdminEnforced():
			log.Warn("the admin API has no authentication: keep it on a private network or set serve.admin.auth.bearer_tokens")
		}
	}
	st := cfg.Serve
	httpTLS, err := listenerTLS("serve.http.tls", st.HTTP.TLS, log, "h2", "http/1.1")
	if err != nil {
		return err
	}
	grpcTLS, err := listenerTLS("serve.grpc.tls", st.GRPC.TLS, log, "h2")
	if err != nil {
		return err
	}
	metricsTLS, err := listenerTLS("serve.metrics.tls", st.Metrics.TLS, log, "h2", "http/1.1")
	if err != nil {
		return err
	}
	var (
		grpcServices []func(*grpc.Server)
		runners      []func(context.Context) error
	)
	if inv := cfg.Invalidation; inv.Enabled && mode != httpapi.ModePublic {
		var tl *outbox.Tailer
		// The heartbeat is withheld while the outbox cannot be read, so
		// sidecars never mistake a blind control plane for a quiet one.
		live := max(5*time.Second, 20*inv.PollInterval.D())
		opts := xds.Options{
			Retention: inv.Retention.D(), HeartbeatInterval: inv.HeartbeatInterval.D(), Logger: log,
			Live: func() bool { return tl.Live(live) },
		}
		if ev := cfg.Envoy; ev.Enabled {
			opts.Envoy = &xds.EnvoyOptions{
				ListenerPort: uint32(ev.ListenerPort), App: ev.App, Sidecar: ev.Sidecar, Timeout: ev.Timeout.D(),
				FailureModeAllow: ev.FailureModeAllow, RequiredScopes: ev.RequiredScopes,
			}
		}
		xs, err := xds.New(opts)
		if err != nil {
			return err
		}
		if err := xs.RegisterMetrics(registry); err != nil {
			return err
		}
		// Tail the database verify reads: with a read replica, an
		// invalidation must not reach sidecars before the replica has the
		// change, or a refetch from the replica would re-cache the old
		// verdict under the new watermark.
		var events outbox.Source = p.store
		if p.replica != nil {
			events = p.replica
		}
		tl = outbox.New(events, xs.Publish, outbox.Options{Interval: inv.PollInterval.D(), Horizon: inv.Retention.D(), Logger: log})
		if err := tl.Prime(ctx); err != nil {
			return fmt.Errorf("read the outbox: %w", err)
		}
		p.committed.Set(tl.Wake)
		grpcServices = append(grpcServices, xs.Register)
		runners = append(runners, xs.Run, tl.Run)
	}
	httpAddr := hostPort(cfg.Serve.HTTP.Host, cfg.Serve.HTTP.Port)
	grpcAddr := hostPort(cfg.Serve.GRPC.Host, cfg.Serve.GRPC.Port)
	metricsAddr := hostPort(cfg.Serve.Metrics.Host, cfg.Serve.Metrics.Port)
	srv, err := controlplane.New(ctx, controlplane.Config{
		HTTPAddr:    httpAddr,
		GRPCAddr:    grpcAddr,
		MetricsAddr: metricsAddr,
		Limits:      listenlimits.Limits{MaxConnections: cfg.Serve.Limits.MaxConnections, MaxConcurrentStreams: uint32(cfg.Serve.Limits.MaxConcurrentStreams)},
		HTTPTLS:     httpTLS,
		GRPCTLS:     grpcTLS,
		MetricsTLS:  metricsTLS,
		// Reflection lists services, so by default only on loopback.
		GRPCReflection: cfg.Serve.GRPC.ReflectionOn(),
		Shutdown:       listenlimits.Shutdown{DrainDelay: st.Shutdown.DrainDelay.D(), Timeout: st.Shutdown.Timeout.D(), Hurry: e.hurry},
		HTTP: httpapi.Options{
			Mode:                 mode,
			MaxBodyBytes:         cfg.Serve.HTTP.MaxBodyBytes,
			ClientIPSource:       src,
			ExcludeHealthFromLog: cfg.Serve.HTTP.RequestLog.ExcludeHealthEndpoints,
			Auth:                 auth,
			AllowedHosts:         cfg.Serve.HTTP.AllowedHosts,
			BindHost:             cfg.Serve.HTTP.Host,
		},
	}, controlplane.Deps{Keys: p.keys, API: api, Logger: log, Registry: registry, GRPC: grpcServices, Runners: runners})
	if err != nil {
		return err
	}
	listeners := controlPlaneListeners(st, mode != httpapi.ModePublic, auth.AdminEnforced(), auth.SidecarEnforced())
	if !withProxy {
		warnExposed(log, listeners)
		return srv.Run(ctx)
	}
	pc := cfg.Proxy
	pc.Upstream = loopback(srv.GRPCAddr())
	if !cfg.Invalidation.Enabled {
		pc.Invalidation.Enabled = false
	} else if need := pc.Cache.TTL.D() + pc.StaleIfError.D(); cfg.Invalidation.Retention.D() < need {
		return fmt.Errorf("invalidation.retention (%s) must be at least proxy.cache.ttl + proxy.stale_if_error (%s)", cfg.Invalidation.Retention, need)
	}
	if pc.UpstreamToken.IsZero() {
		pc.UpstreamToken = embeddedProxyToken(cfg.Serve.Admin.Auth)
	}
	if st.GRPC.TLS.Enabled && !pc.UpstreamTLS.Enabled {
		return fmt.Errorf("--with-proxy: serve.grpc.tls is enabled, so the embedded sidecar needs proxy.upstream_tls (a ca_file that verifies the gRPC certificate for %s, and a client certificate when client_auth is require)", pc.Upstream)
	}
	px, closeProxy, err := buildProxy(ctx, pc, log, e.hurry)
	if err != nil {
		return err
	}
	defer closeProxy()
	warnExposed(log, append(listeners, proxyListeners(pc)...))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return px.Run(gctx) })
	return g.Wait()
}

// loopback turns a listener address into one this process can dial: an
// unspecified host (0.0.0.0, ::) becomes the loopback address.
func loopback(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	if ap.Addr().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if ap.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		return netip.AddrPortFrom(lo, ap.Port()).String()
	}
	return ap.String()
}

// dsnScheme returns the scheme of a DSN, never the rest (it may hold a
// password).
func dsnScheme(dsn string) string {
	if s, _, ok := strings.Cut(dsn, "://"); ok {
		return s
	}
	return ""
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
