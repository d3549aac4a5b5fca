package outbox

import (
	"context"
	"sync/atomic"

	"github.com/talos-project/talos/controlplane/store"
)

// Signal is a wake-up bound late: the store is wrapped before the tailer that
// should be woken exists. The zero value does nothing until Set.
type Signal struct{ f atomic.Pointer[func()] }

// Set makes Fire call f.
func (s *Signal) Set(f func()) { s.f.Store(&f) }

// Fire calls the function given to Set, if any.
func (s *Signal) Fire() {
	if f := s.f.Load(); f != nil {
		(*f)()
	}
}

// Notifying returns st with a commit hook: every InTx that commits fires sig,
// so this process's tailer reads its own changes at once instead of at its
// next poll. Every change that writes an event does so inside InTx.
func Notifying(st store.Store, sig *Signal) store.Store { return notifying{st, sig} }

type notifying struct {
	store.Store
	sig *Signal
}

func (n notifying) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	err := n.Store.InTx(ctx, fn)
	if err == nil {
		n.sig.Fire()
	}
	return err
}
