// Command obol is a self-hosted, OpenAI-style model API gateway with tiered
// quotas.
//
//	obol serve -config FILE [-addr HOST:PORT]
//	obol migrate -config FILE         apply the PostgreSQL schema's migrations
//	obol keys create|list|get|update|revoke   administer API keys
//	obol projects create|list|get|update|delete   administer projects
//	obol usage [--period YYYY-MM]             every key's tokens for a month
//	obol hash-key < secret        print the sha256 a config key needs
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "obol:", err)
		var ce *configError
		var ue *usageError
		if errors.As(err, &ce) || errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a command line the program does not understand; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

const usageText = `usage:
  obol serve -config FILE [-addr HOST:PORT]   run the gateway
  obol migrate -config FILE                   apply the PostgreSQL migrations without serving
  obol keys create|list|get|update|revoke     administer API keys (obol keys for details)
  obol projects create|list|get|update|delete administer projects (obol projects for details)
  obol usage [--period YYYY-MM] [--key ID] [--project ID]   every key's tokens and cost for a month
  obol hash-key < SECRET                      print the sha256 of a secret for a config key`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{msg: "no command\n" + usageText}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, getenv)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr, getenv)
	case "hash-key":
		return hashKey(stdin, stdout)
	case "keys":
		return keysCmd(ctx, args[1:], stdout, stderr, getenv)
	case "projects":
		return projectsCmd(ctx, args[1:], stdout, stderr, getenv)
	case "usage":
		return usageCmd(ctx, args[1:], stdout, stderr, getenv)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usageText)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q\n%s", args[0], usageText)}
}
