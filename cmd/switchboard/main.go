// Command switchboard runs one Switchboard node: per-user channels over Redis Pub/Sub,
// WebSockets for browsers, and an HTTP API for backends.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

//go:generate sh -c "go run . --help-markdown > ../../docs/configuration.md"

func main() {
	// A hidden mode for go generate: docs/configuration.md from the flag set.
	if len(os.Args) == 2 && os.Args[1] == "--help-markdown" {
		if err := writeMarkdown(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "switchboard:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}
