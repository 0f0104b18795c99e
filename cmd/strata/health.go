package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

type healthOptions struct {
	url string
}

// newHealthCmd is `strata health`: GET a node's /readyz (or any URL) and exit
// 0 on 200, 1 otherwise. Container images built FROM scratch have no curl;
// their health checks run this.
func newHealthCmd(g *globalOptions) *cobra.Command {
	var o healthOptions
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check a node's /readyz over HTTP: exit 0 when ready, 1 when not",
		Long: `GET --url (default http://127.0.0.1:9644/readyz, the node's --metrics-addr) and print
the answer. Exit 0 on HTTP 200, 1 on any other status or when the node does
not answer within --timeout. Meant for container health checks.`,
		Example: `  strata health --url http://broker-1:9644/readyz --timeout 2s`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://") {
				return fmt.Errorf("%w: --url %q: want an http:// or https:// URL", errUsage, o.url)
			}
			if g.timeout <= 0 {
				return fmt.Errorf("%w: --timeout must be positive", errUsage)
			}
			ctx, cancel := context.WithTimeout(cmdContext(cmd), g.timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
			if err != nil {
				return fmt.Errorf("%w: --url %q: %v", errUsage, o.url, err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", o.url, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			fmt.Fprint(cmd.OutOrStdout(), string(body))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", o.url, resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.url, "url", "http://127.0.0.1:9644/readyz", "URL to GET")
	return cmd
}
