package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const projectsUsage = `usage:
  obol projects create [ID] [--name N] [--rpm N] [--tpm N] [--tpd N] [--concurrency N]
                       [--budget USD [--alert-at 0.5,0.8,1] [--strict]] [--meta k=v]...
  obol projects list
  obol projects get ID
  obol projects update ID [--name N] [--rpm N] [--tpm N] [--tpd N] [--concurrency N] (0: none)
                       [--budget USD|none [--alert-at F,F] [--strict]] [--meta k=v]...
  obol projects delete ID
every command: [--server URL (default $OBOL_SERVER or http://127.0.0.1:8080)] [--json]
the admin token is read from $OBOL_ADMIN_TOKEN`

// cliProject is a project as the admin API shows it.
type cliProject struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Limits   map[string]*int64 `json:"limits"`
	Budget   *cliBudget        `json:"budget"`
	Metadata map[string]string `json:"metadata"`
	Source   string            `json:"source"`
	Created  time.Time         `json:"created_at"`
	Spend    *struct {
		Cost     json.Number `json:"cost"`
		Tokens   int64       `json:"tokens"`
		Requests int64       `json:"requests"`
	} `json:"spend"`
}

// cliBudget is a key's or a project's budget as the admin API shows it.
type cliBudget struct {
	Monthly json.Number `json:"monthly"`
	AlertAt []float64   `json:"alert_at"`
	Strict  bool        `json:"strict"`
}

// String is the budget as a person reads it.
func (b *cliBudget) String() string {
	if b == nil {
		return "none"
	}
	var at []string
	for _, x := range b.AlertAt {
		at = append(at, strconv.FormatFloat(100*x, 'f', -1, 64)+"%")
	}
	strict := ""
	if b.Strict {
		strict = ", strict"
	}
	return "$" + string(b.Monthly) + " a month" + strict + ", alerts at " + orNone(strings.Join(at, ", "))
}

// Short is the budget in a table's column.
func (b *cliBudget) Short() string {
	switch {
	case b == nil:
		return "-"
	case b.Strict:
		return "$" + string(b.Monthly) + " strict"
	}
	return "$" + string(b.Monthly)
}

// projectsCmd runs obol projects SUBCOMMAND.
func projectsCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{msg: "projects: a subcommand is required\n" + projectsUsage}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("projects "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, asJSON := adminFlags(fs, getenv)
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	var spec *projectFlags
	switch sub {
	case "create", "update":
		spec = newProjectFlags(fs)
	case "list", "get", "delete":
	default:
		return &usageError{msg: fmt.Sprintf("projects: unknown subcommand %q\n%s", sub, projectsUsage)}
	}
	if id == "" && sub != "create" && sub != "list" {
		return &usageError{msg: "projects " + sub + ": the project's id comes first\n" + projectsUsage}
	}
	if err := fs.Parse(args); err != nil {
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 || (sub == "list" && id != "") {
		return &usageError{msg: fmt.Sprintf("projects %s: unexpected arguments\n%s", sub, projectsUsage)}
	}
	a, err := newAdmin(*server, *asJSON, stdout, getenv)
	if err != nil {
		return err
	}
	path := "/v1/admin/projects"
	if id != "" && sub != "create" {
		path += "/" + url.PathEscape(id)
	}
	var b []byte
	switch sub {
	case "create", "update":
		var body map[string]any
		if body, err = spec.body(fs, sub == "create"); err != nil {
			return err
		}
		if sub == "create" && id != "" {
			body["id"] = id
		}
		if sub == "update" && len(body) == 0 {
			return &usageError{msg: "projects update: nothing to change\n" + projectsUsage}
		}
		method := map[string]string{"create": "POST", "update": "PATCH"}[sub]
		b, err = a.call(ctx, method, path, body)
	case "list", "get":
		b, err = a.call(ctx, "GET", path, nil)
	default: // delete
		b, err = a.call(ctx, "DELETE", path, nil)
	}
	if err != nil {
		return err
	}
	switch {
	case sub == "list":
		return a.printProjects(b)
	case sub == "delete" && !a.json:
		_, err := fmt.Fprintf(a.out, "project %s deleted\n", id)
		return err
	}
	return a.printProject(b)
}

// projectFlags are the flags of projects create and update.
type projectFlags struct {
	name   *string
	limits limitFlags
	meta   metaFlag
	budget budgetFlags
}

func newProjectFlags(fs *flag.FlagSet) *projectFlags {
	f := &projectFlags{meta: metaFlag{}}
	f.name = fs.String("name", "", "the project's name, for people")
	f.limits = newLimitFlags(fs, "across its keys (0: none)")
	f.budget = newBudgetFlags(fs, "all its keys")
	fs.Var(f.meta, "meta", "metadata name=value (repeatable)")
	return f
}

// body is the JSON of the flags that were given.
func (f *projectFlags) body(fs *flag.FlagSet, create bool) (map[string]any, error) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	body := map[string]any{}
	if set["name"] {
		body["name"] = *f.name
	}
	if err := f.limits.body(set, body, "", "none"); err != nil {
		return nil, err
	}
	if err := f.budget.body(set, body, create); err != nil {
		return nil, err
	}
	if len(f.meta) > 0 {
		body["metadata"] = map[string]string(f.meta)
	}
	return body, nil
}

func (a *adminClient) printProject(b []byte) error {
	var p cliProject
	if ok, err := a.decoded(b, &p, "project"); !ok {
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	row("id", p.ID)
	row("name", orDash(p.Name))
	row("source", p.Source)
	row("limits", projectLimits(p.Limits))
	row("budget", p.Budget.String())
	if p.Spend != nil {
		row("spend", fmt.Sprintf("$%s this month, %d tokens, %d requests", p.Spend.Cost, p.Spend.Tokens, p.Spend.Requests))
	}
	row("created", stamp(&p.Created))
	for _, n := range sortedKeys(p.Metadata) {
		row("meta "+n, p.Metadata[n])
	}
	return tw.Flush()
}

func (a *adminClient) printProjects(b []byte) error {
	var list struct {
		Data []cliProject `json:"data"`
	}
	if ok, err := a.decoded(b, &list, "projects"); !ok {
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSOURCE\tLIMITS\tBUDGET\tSPENT")
	for _, p := range list.Data {
		spent := "-"
		if p.Spend != nil {
			spent = "$" + string(p.Spend.Cost)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, orDash(p.Name), p.Source, projectLimits(p.Limits), p.Budget.Short(), spent)
	}
	return tw.Flush()
}

// projectLimits are a project's limits as a person reads them.
func projectLimits(l map[string]*int64) string {
	var parts []string
	for _, n := range []string{"rpm", "tpm", "tpd", "concurrency"} {
		if v := l[n]; v != nil {
			parts = append(parts, fmt.Sprintf("%s %d", n, *v))
		}
	}
	return orNone(strings.Join(parts, ", "))
}
