// Command switchboard-load sizes a Switchboard deployment. It drives real WebSockets and
// HTTP requests against running nodes in one of five scenarios (dm, fanout, conns, rpc, soak),
// reports rates, latency percentiles, errors and the server's memory and CPU, and fails
// (exit status 1) if any accepted message was lost, duplicated or delivered out of order.
//
//	go run ./cmd/switchboard-load dm --url http://127.0.0.1:8080 --users 1000 --duration 10s
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

// Exit statuses.
const (
	exitPass  = 0
	exitFail  = 1 // a guarantee failed: loss, duplicate, reordering, failed connections
	exitUsage = 2 // bad flags, or the run could not be set up
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first interrupt ends the run early and still reports; a second one kills the tool.
	go func() {
		<-ctx.Done()
		stop()
	}()
	// The tool's heap is small and short-lived (one run); collecting it less often leaves
	// more CPU to the server it shares the machine with.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the scenario and prints its result, returning the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, errHelp) {
		return exitPass
	}
	if err == nil {
		err = prepareProcess(cfg, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard-load:", err)
		return exitUsage
	}
	if cfg.cpuProfile != "" {
		stop, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "switchboard-load:", err)
			return exitUsage
		}
		defer stop()
	}
	res, err := runScenario(ctx, cfg, newProgress(stderr, cfg.quiet))
	if err != nil {
		fmt.Fprintln(stderr, "switchboard-load:", err)
		return exitUsage
	}
	if cfg.json {
		err = res.writeJSON(stdout)
	} else {
		err = res.writeTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard-load: writing the result:", err)
		return exitUsage
	}
	if !res.Passed {
		return exitFail
	}
	return exitPass
}

// startCPUProfile profiles the tool until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// runScenario runs the scenario cfg names. An error means the run could not be set up
// (no server, bad credentials); a run that went wrong returns a failed Result instead.
func runScenario(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	switch cfg.scenario {
	case "dm":
		return runDM(ctx, cfg, prog)
	case "fanout":
		return runFanout(ctx, cfg, prog)
	case "conns":
		return runConns(ctx, cfg, prog)
	case "rpc":
		return runRPC(ctx, cfg, prog)
	case "soak":
		return runSoak(ctx, cfg, prog)
	}
	return nil, fmt.Errorf("unknown scenario %q", cfg.scenario)
}
