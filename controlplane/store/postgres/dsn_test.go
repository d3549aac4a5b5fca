package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store/postgres"
)

func TestParseDSN(t *testing.T) {
	t.Parallel()
	def := postgres.DefaultMaxConns()
	for _, tt := range []struct {
		name, dsn string
		pool      postgres.Pool
		where     string
		params    map[string]string // run-time params the server gets
		timeout   time.Duration
	}{
		{
			name:    "defaults",
			dsn:     "postgres://talos:pw@db.example:5433/talos?sslmode=disable",
			pool:    postgres.Pool{MaxConns: def, MaxIdleConns: def, MaxConnLifetime: time.Hour, MaxConnIdleTime: 30 * time.Minute},
			where:   `database "talos" on db.example:5433`,
			params:  map[string]string{"application_name": "talos"},
			timeout: postgres.DefaultConnectTimeout,
		},
		{
			name:    "talos pool parameters",
			dsn:     "postgresql://db.example/talos?max_conns=10&max_idle_conns=3&max_conn_lifetime=10m&max_conn_idle_time=1m&application_name=cp&search_path=tenant_a",
			pool:    postgres.Pool{MaxConns: 10, MaxIdleConns: 3, MaxConnLifetime: 10 * time.Minute, MaxConnIdleTime: time.Minute},
			where:   `database "talos" on db.example:5432`,
			params:  map[string]string{"application_name": "cp", "search_path": "tenant_a"},
			timeout: postgres.DefaultConnectTimeout,
		},
		{
			name:    "pgx pool parameters",
			dsn:     "postgres://db.example/talos?pool_max_conns=8&pool_min_conns=5&pool_max_conn_lifetime=2h&pool_max_conn_idle_time=0s&connect_timeout=3",
			pool:    postgres.Pool{MaxConns: 8, MaxIdleConns: 8, MaxConnLifetime: 2 * time.Hour},
			where:   `database "talos" on db.example:5432`,
			params:  map[string]string{"application_name": "talos"},
			timeout: 3 * time.Second,
		},
		{
			name:    "pool_min_conns raises idle connections",
			dsn:     "POSTGRES://db.example/talos?max_conns=4&max_idle_conns=1&pool_min_conns=2&connect_timeout=0",
			pool:    postgres.Pool{MaxConns: 4, MaxIdleConns: 2, MaxConnLifetime: time.Hour, MaxConnIdleTime: 30 * time.Minute},
			where:   `database "talos" on db.example:5432`,
			params:  map[string]string{"application_name": "talos"},
			timeout: 0,
		},
		{
			name:    "unlimited connections",
			dsn:     "postgres:///talos?host=/var/run/postgresql&max_conns=0",
			pool:    postgres.Pool{MaxConns: 0, MaxIdleConns: def, MaxConnLifetime: time.Hour, MaxConnIdleTime: 30 * time.Minute},
			where:   `database "talos" on /var/run/postgresql`,
			params:  map[string]string{"application_name": "talos"},
			timeout: postgres.DefaultConnectTimeout,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := postgres.ParseDSN(tt.dsn)
			if err != nil {
				t.Fatalf("ParseDSN: %v", err)
			}
			if d := cmp.Diff(tt.pool, cfg.Pool); d != "" {
				t.Errorf("Pool mismatch (-want +got):\n%s", d)
			}
			if got := cfg.String(); got != tt.where {
				t.Errorf("String() = %s, want %s", got, tt.where)
			}
			conn := postgres.ConnConfig(cfg)
			if d := cmp.Diff(tt.params, conn.RuntimeParams); d != "" {
				t.Errorf("run-time params mismatch, want no pool parameter among them (-want +got):\n%s", d)
			}
			if conn.ConnectTimeout != tt.timeout {
				t.Errorf("ConnectTimeout = %v, want %v", conn.ConnectTimeout, tt.timeout)
			}
		})
	}
}

func TestParseDSN_Errors(t *testing.T) {
	t.Parallel()
	const password = "hunter2"
	for _, dsn := range []string{
		"",
		"mysql://talos:hunter2@db.example/talos",
		"host=db.example password=hunter2 dbname=talos",
		"sqlite:///var/lib/talos.db",
		"postgres://talos:hunter2@db.example/talos?max_conns=many",
		"postgres://talos:hunter2@db.example/talos?max_conns=-1",
		"postgres://talos:hunter2@db.example/talos?max_conns=1&max_conns=2",
		"postgres://talos:hunter2@db.example/talos?max_conns=1&pool_max_conns=2",
		"postgres://talos:hunter2@db.example/talos?max_conn_lifetime=10",
		"postgres://talos:hunter2@db.example/talos?pool_max_conns=2&pool_min_conns=5",
		"postgres://talos:hunter2@db.example/talos?pool_health_check_period=1m",
		"postgres://talos:hunter2@db.example:notaport/talos",
		"postgres://talos:hunter2@db.example/talos?sslmode=bogus",
		"postgres://talos@db.example/talos?password=hunter2&port=x",
		"postgres://talos:hunter2@db.example/talos?%zz",
		"postgres://talos:hun%zzter2@db.example/talos",
	} {
		_, err := postgres.ParseDSN(dsn)
		switch {
		case err == nil:
			t.Errorf("ParseDSN(%q) = nil error, want one", dsn)
		case strings.Contains(err.Error(), password):
			t.Errorf("ParseDSN(%q) = %q, which reveals the password", dsn, err)
		case !strings.HasPrefix(err.Error(), "parse postgres dsn: "):
			t.Errorf("ParseDSN(%q) = %q, want a parse postgres dsn error", dsn, err)
		}
	}
}
