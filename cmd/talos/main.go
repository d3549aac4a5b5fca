// Command talos is the one Talos binary: the control plane (serve), schema
// migrations (migrate), the admin client (keys) and version. See run.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// signals returns a context that ends on the first SIGTERM or SIGINT and a
// channel closed on the second (serve and proxy then cut their drain delay
// short). After the second, the signals get their default action back: a
// third ends the process at once.
func signals() (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	hurry := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for n := 0; n < 2; n++ {
			select {
			case <-ch:
			case <-done:
				return
			}
			if n == 0 {
				cancel()
			} else {
				close(hurry)
				signal.Reset(os.Interrupt, syscall.SIGTERM)
			}
		}
	}()
	return ctx, hurry, func() { signal.Stop(ch); close(done); cancel() }
}

func main() {
	ctx, hurry, stop := signals()
	err := runEnv(ctx, os.Args[1:], &env{vars: os.Environ(), stdout: os.Stdout, stderr: os.Stderr, hurry: hurry})
	stop()
	if err != nil {
		var ue usageError
		if !errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		os.Exit(exitCodeOf(err))
	}
}
