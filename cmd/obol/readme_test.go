package main

import (
	"bufio"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

// shellBlocks are a document's sh code blocks, in order, with the line
// each starts on.
func shellBlocks(t *testing.T, path string) (blocks []string, lines []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur *strings.Builder
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && line == "```sh":
			cur = &strings.Builder{}
			lines = append(lines, n)
		case cur != nil && line == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks, lines
}

// exampleDocs are the documents whose shell examples are run, in order.
var exampleDocs = []string{"README.md", "docs/api.md", "docs/billing.md", "docs/configuration.md", "docs/operations.md"}

// TestREADMEExamples runs every shell example of the README and the docs,
// as written and in order, against the demo: configs/demo.yaml in front of the
// simulator, as make run serves it, with bin/obol the command. Only the
// gateway's address is the test's own (127.0.0.1:8080 may be taken), and
// the block of the two make commands is what the test itself stands for.
func TestREADMEExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's examples need curl")
	}
	up := httptest.NewServer(sim.New(sim.Config{}))
	defer up.Close()
	dir := t.TempDir()
	bin, err := buildObol()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "bin", "obol")); err != nil {
		t.Fatal(err)
	}
	config, _ := filepath.Abs("../../configs/demo.yaml")
	_, base, logs := startObolIn(t, dir, config, "OBOL_DEMO_UPSTREAM="+up.URL+"/v1", "OBOL_ADMIN_TOKEN=demo-admin-token-not-a-secret")
	ran := 0
	for _, doc := range exampleDocs {
		blocks, lines := shellBlocks(t, "../../"+doc)
		for i, b := range blocks {
			if strings.HasPrefix(b, "make run") {
				continue
			}
			script := strings.ReplaceAll(b, "http://127.0.0.1:8080", base)
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s:%d: %v\n%s\n--- output:\n%s", doc, lines[i], err, b, out)
			}
			ran++
		}
	}
	if ran < 5 {
		t.Errorf("ran %d blocks", ran)
	}
	if t.Failed() {
		t.Logf("the gateway's log:\n%s", logs)
	}
}
