package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/obol/obol/money"
)

const keysUsage = `usage:
  obol keys create --tier T [--name N] [--models M,M] [--scopes S,S] [--rpm N] [--tpm N] [--tpd N]
                   [--concurrency N] [--project P] [--budget USD [--alert-at 0.5,0.8,1] [--strict]]
                   [--expires RFC3339 | --expires-in 720h] [--meta k=v]... [--quiet]
  obol keys list
  obol keys get ID
  obol keys update ID [--tier T] [--name N] [--models M,M] [--scopes S,S] [--rpm N|tier] [--tpm N|tier]
                   [--tpd N|tier] [--concurrency N|tier] [--project P|none] [--budget USD|none [--alert-at F,F] [--strict]]
                   [--expires RFC3339|never] [--meta k=v]...
  obol keys revoke ID
every command: [--server URL (default $OBOL_SERVER or http://127.0.0.1:8080)] [--json]
the admin token is read from $OBOL_ADMIN_TOKEN`

// cliKey is a key as the admin API shows it.
type cliKey struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Tier       string            `json:"tier"`
	Models     []string          `json:"models"`
	Limits     map[string]int64  `json:"limits"`
	Scopes     []string          `json:"scopes"`
	Project    *string           `json:"project"`
	Budget     *cliBudget        `json:"budget"`
	Metadata   map[string]string `json:"metadata"`
	Prefix     string            `json:"prefix"`
	Status     string            `json:"status"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
	RevokedAt  *time.Time        `json:"revoked_at"`
	Secret     string            `json:"secret,omitempty"`
}

// keysCmd runs obol keys SUBCOMMAND.
func keysCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{msg: "keys: a subcommand is required\n" + keysUsage}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server, asJSON := adminFlags(fs, getenv)
	var id string
	needID := sub == "get" || sub == "update" || sub == "revoke"
	if needID {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return &usageError{msg: "keys " + sub + ": the key's id comes first\n" + keysUsage}
		}
		id, args = args[0], args[1:]
	}
	var spec *keySpecFlags
	var quiet *bool
	switch sub {
	case "create", "update":
		spec = newKeySpecFlags(fs)
		if sub == "create" {
			quiet = fs.Bool("quiet", false, "print only the key's id and secret, a space apart, for a script: read -r ID SECRET <<<\"$(obol keys create … --quiet)\"")
		}
	case "list", "get", "revoke":
	default:
		return &usageError{msg: fmt.Sprintf("keys: unknown subcommand %q\n%s", sub, keysUsage)}
	}
	if err := fs.Parse(args); err != nil {
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("keys %s: unexpected %q\n%s", sub, fs.Arg(0), keysUsage)}
	}
	a, err := newAdmin(*server, *asJSON, stdout, getenv)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return createKey(ctx, a, spec, fs, *quiet, stdout)
	case "list":
		b, err := a.call(ctx, "GET", "/v1/admin/keys", nil)
		if err != nil {
			return err
		}
		return a.printList(b)
	case "get":
		b, err := a.call(ctx, "GET", "/v1/admin/keys/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		return a.printKey(b, false)
	case "update":
		body, err := spec.body(fs, false)
		if err != nil {
			return err
		}
		if len(body) == 0 {
			return &usageError{msg: "keys update: nothing to change\n" + keysUsage}
		}
		b, err := a.call(ctx, "PATCH", "/v1/admin/keys/"+url.PathEscape(id), body)
		if err != nil {
			return err
		}
		return a.printKey(b, false)
	default: // revoke
		b, err := a.call(ctx, "DELETE", "/v1/admin/keys/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		return a.printKey(b, false)
	}
}

// createKey runs obol keys create: quiet prints only the id and the
// secret, for a script to read.
func createKey(ctx context.Context, a *adminClient, spec *keySpecFlags, fs *flag.FlagSet, quiet bool, stdout io.Writer) error {
	body, err := spec.body(fs, true)
	if err != nil {
		return err
	}
	b, err := a.call(ctx, "POST", "/v1/admin/keys", body)
	if err != nil {
		return err
	}
	if !quiet {
		return a.printKey(b, true)
	}
	var k cliKey
	if err := json.Unmarshal(b, &k); err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	_, err = fmt.Fprintln(stdout, k.ID, k.Secret)
	return err
}

// keySpecFlags are the flags of create and update.
type keySpecFlags struct {
	name, tier, models, scopes, project, expires *string
	limits                                       limitFlags
	expiresIn                                    *time.Duration
	meta                                         metaFlag
	budget                                       budgetFlags
}

// limitFlags are --rpm, --tpm, --tpd and --concurrency, a key's or a
// project's.
type limitFlags map[string]*string

func newLimitFlags(fs *flag.FlagSet, of string) limitFlags {
	return limitFlags{
		"rpm":         fs.String("rpm", "", "requests per minute "+of),
		"tpm":         fs.String("tpm", "", "tokens per minute "+of),
		"tpd":         fs.String("tpd", "", "tokens per day "+of),
		"concurrency": fs.String("concurrency", "", "requests in flight at once "+of),
	}
}

// body sets a body's limits from the flags that were given; a value of
// clear ("" for none) is null, and zero means what zero is.
func (f limitFlags) body(set map[string]bool, body map[string]any, clear, zero string) error {
	limits := map[string]any{}
	for name, v := range f {
		switch {
		case !set[name]:
			continue
		case clear != "" && *v == clear:
			limits[name] = nil
			continue
		}
		n, err := strconv.ParseInt(*v, 10, 64)
		if err != nil || n < 0 {
			return &usageError{msg: fmt.Sprintf("--%s %q: want a whole number ≥ 0 (0 is %s)", name, *v, zero)}
		}
		limits[name] = n
	}
	if len(limits) > 0 {
		body["limits"] = limits
	}
	return nil
}

// budgetFlags are --budget, --alert-at and --strict, a key's or a
// project's.
type budgetFlags struct {
	budget, alertAt *string
	strict          *bool
}

func newBudgetFlags(fs *flag.FlagSet, of string) budgetFlags {
	return budgetFlags{
		budget:  fs.String("budget", "", "a monthly budget of "+of+" in USD (update: \"none\" to remove it)"),
		alertAt: fs.String("alert-at", "", "comma-separated fractions of the budget that send alerts (default 0.5,0.8,1)"),
		strict:  fs.Bool("strict", false, "with --budget: admit a request only if its cost bound fits in what the budget leaves, so spend never passes it"),
	}
}

type metaFlag map[string]string

func (m metaFlag) String() string { return "" }

func (m metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want name=value")
	}
	m[k] = val
	return nil
}

func newKeySpecFlags(fs *flag.FlagSet) *keySpecFlags {
	f := &keySpecFlags{meta: metaFlag{}}
	f.name = fs.String("name", "", "who the key is for")
	f.tier = fs.String("tier", "", "the key's tier")
	f.models = fs.String("models", "", "comma-separated models the key may use (empty: all)")
	f.scopes = fs.String("scopes", "", "comma-separated scopes: chat, chat:stream, models, usage")
	f.limits = newLimitFlags(fs, "of its own (0: unlimited; update: \"tier\" for the tier's)")
	f.project = fs.String("project", "", "the project it belongs to (update: \"none\" to leave it)")
	f.budget = newBudgetFlags(fs, "its own")
	f.expires = fs.String("expires", "", "when the key stops working, RFC 3339 (update: \"never\" to clear)")
	f.expiresIn = fs.Duration("expires-in", 0, "the key stops working after this long")
	fs.Var(f.meta, "meta", "metadata name=value (repeatable)")
	return f
}

// body is the JSON of the flags that were given.
func (f *keySpecFlags) body(fs *flag.FlagSet, create bool) (map[string]any, error) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	body := map[string]any{}
	list := func(s string) []string {
		out := []string{}
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	if set["name"] {
		body["name"] = *f.name
	}
	if set["tier"] {
		body["tier"] = *f.tier
	}
	if set["models"] {
		body["models"] = list(*f.models)
	}
	if set["scopes"] {
		body["scopes"] = list(*f.scopes)
	}
	if set["project"] {
		body["project"] = *f.project
		if *f.project == "none" && !create {
			body["project"] = nil
		}
	}
	tier := ""
	if !create {
		tier = "tier"
	}
	if err := f.limits.body(set, body, tier, "unlimited"); err != nil {
		return nil, err
	}
	if err := f.budget.body(set, body, create); err != nil {
		return nil, err
	}
	switch {
	case set["expires"] && set["expires-in"]:
		return nil, &usageError{msg: "--expires and --expires-in: one or the other"}
	case set["expires"] && *f.expires == "never" && !create:
		body["expires_at"] = nil
	case set["expires"]:
		t, err := time.Parse(time.RFC3339, *f.expires)
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("--expires %q: want RFC 3339, such as 2027-01-31T00:00:00Z", *f.expires)}
		}
		body["expires_at"] = t
	case set["expires-in"]:
		body["expires_at"] = time.Now().Add(*f.expiresIn).UTC().Truncate(time.Second)
	}
	if len(f.meta) > 0 {
		body["metadata"] = map[string]string(f.meta)
	}
	if create && !set["tier"] {
		return nil, &usageError{msg: "keys create: --tier is required\n" + keysUsage}
	}
	return body, nil
}

// body sets a body's budget from --budget, --alert-at and --strict.
func (f budgetFlags) body(set map[string]bool, body map[string]any, create bool) error {
	switch {
	case (set["alert-at"] || set["strict"]) && !set["budget"]:
		return &usageError{msg: "--alert-at and --strict go with --budget"}
	case !set["budget"]:
		return nil
	case *f.budget == "none" && !create:
		body["budget"] = nil
		return nil
	}
	if m, err := money.ParseUSD(*f.budget); err != nil || m < 0 {
		return &usageError{msg: fmt.Sprintf("--budget %q: want an amount of USD, such as 25 or 0.50", *f.budget)}
	}
	b := map[string]any{"monthly": json.Number(*f.budget)}
	if set["alert-at"] {
		at := []float64{}
		for _, v := range strings.Split(*f.alertAt, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return &usageError{msg: fmt.Sprintf("--alert-at %q: want fractions such as 0.5,0.8,1", *f.alertAt)}
			}
			at = append(at, x)
		}
		b["alert_at"] = at
	}
	if *f.strict {
		b["strict"] = true
	}
	body["budget"] = b
	return nil
}

func (a *adminClient) printKey(b []byte, created bool) error {
	var k cliKey
	if ok, err := a.decoded(b, &k, "key"); !ok {
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	row("id", k.ID)
	row("name", k.Name)
	row("tier", k.Tier)
	row("status", k.Status)
	row("prefix", k.Prefix)
	row("models", orAll(strings.Join(k.Models, ", ")))
	row("scopes", strings.Join(k.Scopes, ", "))
	row("limits", limitsString(k.Limits))
	if k.Project != nil {
		row("project", *k.Project)
	}
	if k.Budget != nil {
		row("budget", k.Budget.String())
	}
	row("created", stamp(&k.CreatedAt))
	row("expires", stamp(k.ExpiresAt))
	row("last used", stamp(k.LastUsedAt))
	if k.RevokedAt != nil {
		row("revoked", stamp(k.RevokedAt))
	}
	for _, n := range sortedKeys(k.Metadata) {
		row("meta "+n, k.Metadata[n])
	}
	if created {
		row("secret", k.Secret)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if created {
		fmt.Fprintln(a.out, "\nStore the secret now: it is not kept and cannot be shown again.")
	}
	return nil
}

func (a *adminClient) printList(b []byte) error {
	var list struct {
		Data []cliKey `json:"data"`
	}
	if ok, err := a.decoded(b, &list, "keys"); !ok {
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTIER\tPROJECT\tBUDGET\tSTATUS\tPREFIX\tSCOPES\tCREATED\tLAST USED\tEXPIRES")
	for _, k := range list.Data {
		project := "-"
		if k.Project != nil {
			project = *k.Project
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, orDash(k.Name), k.Tier, project, k.Budget.Short(), k.Status, k.Prefix,
			strings.Join(k.Scopes, ","), stamp(&k.CreatedAt), stamp(k.LastUsedAt), stamp(k.ExpiresAt))
	}
	return tw.Flush()
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func limitsString(l map[string]int64) string {
	if len(l) == 0 {
		return "the tier's"
	}
	var parts []string
	for _, n := range []string{"rpm", "tpm", "tpd", "concurrency"} {
		if v, ok := l[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", n, v))
		}
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
