package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The admin commands speak to a running gateway's admin API, with the
// token from OBOL_ADMIN_TOKEN: the CLI holds no store credentials and
// goes through the same checks as any other admin client.

// adminClient is a client of the admin API.
type adminClient struct {
	server string
	token  string
	json   bool
	out    io.Writer
	hc     *http.Client
}

// adminFlags are the flags every admin command takes.
func adminFlags(fs *flag.FlagSet, getenv func(string) string) (*string, *bool) {
	def := getenv("OBOL_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	return fs.String("server", def, "the gateway (or its admin listener)"), fs.Bool("json", false, "print JSON, for scripts")
}

func newAdmin(server string, asJSON bool, stdout io.Writer, getenv func(string) string) (*adminClient, error) {
	tok := getenv("OBOL_ADMIN_TOKEN")
	if tok == "" { // else the first of OBOL_ADMIN_TOKENS (name=token,…)
		first, _, _ := strings.Cut(getenv("OBOL_ADMIN_TOKENS"), ",")
		_, tok, _ = strings.Cut(first, "=")
	}
	if tok == "" {
		return nil, &usageError{msg: "set OBOL_ADMIN_TOKEN to the gateway's admin token"}
	}
	if _, err := url.ParseRequestURI(server); err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--server %q: want a URL such as http://127.0.0.1:8080", server)}
	}
	return &adminClient{server: strings.TrimSuffix(server, "/"), token: tok, json: asJSON, out: stdout, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status int
	Code   string
	Msg    string
	Param  string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg)
	if e.Param != "" {
		s += " (" + e.Param + ")"
	}
	return s
}

// call sends a request and returns the answer's body, or the API's error.
func (a *adminClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.server+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, a.server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code    string  `json:"code"`
				Message string  `json:"message"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return nil, &apiError{Status: resp.StatusCode, Code: "error", Msg: strings.TrimSpace(string(b))}
		}
		ae := &apiError{Status: resp.StatusCode, Code: e.Error.Code, Msg: e.Error.Message}
		if e.Error.Param != nil {
			ae.Param = *e.Error.Param
		}
		return nil, ae
	}
	return b, nil
}

// decoded is false, having printed b as it came, with --json; else it
// decodes b into v (what names it in an error) for a table.
func (a *adminClient) decoded(b []byte, v any, what string) (bool, error) {
	if a.json {
		_, err := a.out.Write(append(b, '\n'))
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("read %s: %w", what, err)
	}
	return true, nil
}
