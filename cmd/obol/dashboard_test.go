package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardMetricsExist: every metric the Grafana dashboard queries
// is an instrument the code creates, so a renamed metric cannot leave a
// panel empty unnoticed.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	// The instruments, from the code that creates them.
	created := map[string]bool{}
	instrument := regexp.MustCompile(`(?:Int64Counter|Float64Histogram|Int64Histogram|Int64UpDownCounter|Int64ObservableGauge)\("([a-z_.]+)"`)
	for _, dir := range []string{"gateway", "models", "quota", "usage", "keys"} {
		files, _ := filepath.Glob(filepath.Join("../..", dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, _ := os.ReadFile(f)
			for _, m := range instrument.FindAllStringSubmatch(string(src), -1) {
				created[strings.ReplaceAll(m[1], ".", "_")] = true
			}
		}
	}
	if len(created) < 15 {
		t.Fatalf("found only %d instruments: %v", len(created), created)
	}
	series := regexp.MustCompile(`\b(?:obol|http_server|gen_ai)_[a-z_]+`)
	labels := map[string]bool{"gen_ai_request_model": true, "gen_ai_token_type": true, "gen_ai_operation_name": true}
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				if labels[name] {
					continue
				}
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count", "_total", "_seconds"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !created[base] {
					t.Errorf("panel %q queries %s, which no instrument makes", p.Title, name)
				}
				queried++
			}
		}
	}
	if queried < 20 {
		t.Errorf("only %d metric references in the dashboard", queried)
	}
}
