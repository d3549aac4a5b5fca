package cache_test

import (
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/cache"
)

func TestNoop(t *testing.T) {
	t.Parallel()
	var s cache.Store = cache.Noop{}
	if err := s.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, ok, err := s.Get(t.Context(), "k"); v != nil || ok || err != nil {
		t.Errorf("Get = %q, %v, %v; want nil, false, nil", v, ok, err)
	}
	if err := s.Delete(t.Context(), "k", "k2"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
