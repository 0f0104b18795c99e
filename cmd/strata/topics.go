package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

func newTopicsCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create, list, describe, alter and delete topics",
		Long: `Manage topics, like kafka-topics.sh.

Tables by default; --output json prints JSON whose field names are stable.
Exit codes: 0 success, 1 a request the cluster refused (or could not be
reached), 2 bad usage.`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("name a subcommand: create, list, describe, alter or delete")
		},
	}
	cmd.AddCommand(
		newTopicsCreateCmd(g),
		newTopicsListCmd(g),
		newTopicsDescribeCmd(g),
		newTopicsAlterCmd(g),
		newTopicsDeleteCmd(g),
	)
	return cmd
}

// The helpers below are shared by the admin commands (topics, cluster,
// elect-leaders, reassign).

// usagef is a bad-usage error (exit 2).
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// noArgs refuses positional arguments as bad usage.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see %s --help)", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

// subcommandArgs refuses an unknown subcommand of a parent command.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usagef("unknown command %q for %s (want %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
	return nil
}

// nArgs wants between lo and hi (-1: no limit) positional arguments, named what.
func nArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo {
			return usagef("%s: missing %s (usage: %s)", cmd.CommandPath(), what, cmd.UseLine())
		}
		if hi >= 0 && len(args) > hi {
			return usagef("%s: too many arguments %q (usage: %s)", cmd.CommandPath(), args, cmd.UseLine())
		}
		return nil
	}
}

// withAdmin runs fn with an Admin for the global flags' cluster, bounded by
// --timeout; cluster errors become messages that name the problem.
func withAdmin(cmd *cobra.Command, g *globalOptions, fn func(ctx context.Context, a *client.Admin) error) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	defer cancel()
	err = fn(ctx, client.NewAdmin(cl))
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from the cluster within --timeout %s; check --bootstrap %s and that the cluster is up", g.timeout, g.bootstrap)
	}
	return err
}

// clusterError turns a cluster's error into a message without the client's
// "strata:" prefix: what was asked, why it was refused, the code.
func clusterError(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *client.Error
	if errors.As(err, &e) {
		if e.Message == "" {
			return fmt.Errorf("%s: %s", what, e.Code)
		}
		return fmt.Errorf("%s: %s (%s)", what, e.Message, e.Code)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// errorCode is err's Strata code, NONE when it has none.
func errorCode(err error) pb.ErrorCode {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return pb.ErrorCode_NONE
}

// errorMessage is err's message for JSON output ("" for nil).
func errorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *client.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// parseConfigs parses --config key=value flags.
func parseConfigs(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usagef("--config %q: want key=value, e.g. --config retention.ms=86400000", kv)
		}
		if _, dup := out[k]; dup {
			return nil, usagef("--config %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// parseInt32List parses "1,2,3" (what names the flag).
func parseInt32List(s, what string) ([]int32, error) {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, usagef("%s: %q is not an integer (want e.g. 1,2,3)", what, f)
		}
		if slices.Contains(out, int32(n)) {
			return nil, usagef("%s: %d named twice", what, n)
		}
		out = append(out, int32(n))
	}
	return out, nil
}

// ints formats a replica list as 1,2,3 ("-" when empty).
func ints(s []int32) string {
	if len(s) == 0 {
		return "-"
	}
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = strconv.Itoa(int(n))
	}
	return strings.Join(parts, ",")
}

// orEmpty keeps JSON arrays as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
