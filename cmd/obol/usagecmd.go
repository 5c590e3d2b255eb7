package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"text/tabwriter"
)

const usageCmdUsage = `usage:
  obol usage [--period YYYY-MM] [--key ID] [--project ID] [--server URL] [--json]
every key's tokens and cost for a month (default: the current UTC month), from the admin API`

// usageCmd runs obol usage: every key's month, for billing.
func usageCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, asJSON := adminFlags(fs, getenv)
	period := fs.String("period", "", "the month, YYYY-MM (default: the current UTC month)")
	key := fs.String("key", "", "one key's id")
	project := fs.String("project", "", "one project's keys")
	if err := fs.Parse(args); err != nil {
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("usage: unexpected %q\n%s", fs.Arg(0), usageCmdUsage)}
	}
	a, err := newAdmin(*server, *asJSON, stdout, getenv)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *period != "" {
		q.Set("period", *period)
	}
	if *key != "" {
		q.Set("key", *key)
	}
	if *project != "" {
		q.Set("project", *project)
	}
	path := "/v1/admin/usage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	b, err := a.call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if a.json {
		_, err := stdout.Write(append(b, '\n'))
		return err
	}
	var u struct {
		Period      string      `json:"period"`
		TotalTokens int64       `json:"total_tokens"`
		TotalCost   json.Number `json:"total_cost"`
		Keys        map[string]struct {
			Project *string `json:"project"`
			ByModel map[string]struct {
				Prompt     int64       `json:"prompt"`
				Completion int64       `json:"completion"`
				Requests   int64       `json:"requests"`
				Cost       json.Number `json:"cost"`
			} `json:"by_model"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "KEY\tPROJECT\tMODEL\tREQUESTS\tPROMPT\tCOMPLETION\tTOTAL\tCOST (USD)\t\n")
	ids := make([]string, 0, len(u.Keys))
	for id := range u.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := u.Keys[id]
		project := "-"
		if k.Project != nil && *k.Project != "" {
			project = *k.Project
		}
		for _, m := range sortedKeys(k.ByModel) {
			r := k.ByModel[m]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", id, project, m, r.Requests, r.Prompt, r.Completion, r.Prompt+r.Completion, r.Cost)
		}
	}
	fmt.Fprintf(tw, "%s\t\t%s\t\t\t\t%d\t%s\t\n", "total", u.Period, u.TotalTokens, u.TotalCost)
	return tw.Flush()
}
