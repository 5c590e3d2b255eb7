package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/obol/obol/loadtest/sim"
)

// The demo's upstream, in process: with OBOL_DEMO_SIMULATOR=ADDR, serve
// also runs the bundled simulator on ADDR (as make run runs it beside
// the gateway), so that the container image answers like make run with
// one process and no shell. For the demo only: a production
// configuration names real backends and leaves it unset.

// startDemoSimulator serves the simulator on addr until ctx ends.
func startDemoSimulator(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("OBOL_DEMO_SIMULATOR: %w", err)
	}
	srv := &http.Server{Handler: sim.New(sim.Config{TokensPerSecond: 40}), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo simulator stopped", "err", err)
		}
	}()
	log.Info("demo simulator listening (OBOL_DEMO_SIMULATOR; not for production)", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
