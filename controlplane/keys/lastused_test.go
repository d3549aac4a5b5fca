package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

func TestService_Run_RecordsLastUsed(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	ctx := t.Context()
	used, secret, err := ts.svc.Issue(ctx, tenantA, keys.IssueInput{Attributes: keys.Attributes{Name: "used"}, ActorID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	idle, _, err := ts.svc.Issue(ctx, tenantA, keys.IssueInput{Attributes: keys.Attributes{Name: "idle"}, ActorID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ts.svc.Run(runCtx) }()
	for range 3 {
		if _, err := ts.svc.Verify(ctx, credential.Presented{Tenant: tenantA, Credential: secret}); err != nil {
			t.Fatal(err)
		}
	}
	stop() // Run flushes what is pending before it returns
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	k, err := ts.svc.Get(ctx, tenantA, credential.KindIssued, used.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !k.LastUsedTime.Equal(ts.clock.Now()) {
		t.Errorf("last used = %v, want %v", k.LastUsedTime, ts.clock.Now())
	}
	k, err = ts.svc.Get(ctx, tenantA, credential.KindIssued, idle.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !k.LastUsedTime.IsZero() {
		t.Errorf("an unused key has last used %v", k.LastUsedTime)
	}
}
