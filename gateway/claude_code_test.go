package gateway_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
)

// claudePath is the Claude Code binary make test installs, or a skip
// (a failure in CI) without it.
func claudePath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("drives Claude Code: skipped under -short")
	}
	path, _ := filepath.Abs(filepath.Join("testdata", "claude-code", "node_modules", ".bin", "claude"))
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Claude Code is not installed (make test installs it): %v", err)
		}
		t.Skipf("Claude Code is not installed (make test installs it): %v", err)
	}
	return path
}

// withWindow gives hermes a context window of n tokens: Claude Code's
// requests (its system prompt and a dozen tools) need tens of thousands.
func withWindow(n int) envOption {
	return func(c *envConfig) { c.models[0].ContextWindow = n }
}

// claudeResult is what claude -p --output-format json prints.
type claudeResult struct {
	IsError  bool   `json:"is_error"`
	NumTurns int    `json:"num_turns"`
	Result   string `json:"result"`
	Usage    struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

// TestClaudeCode runs Claude Code, unchanged and offline, against the
// gateway: asked to read a file with its Read tool, it gets the tool call
// from the backend, reads the file, sends the file's text back as a tool
// result, and prints the backend's answer. The usage it reports and the
// ledger's are what the backend reported.
func TestClaudeCode(t *testing.T) {
	claude := claudePath(t)
	for _, backend := range []string{"openai", "anthropic"} {
		t.Run(backend+" backend", func(t *testing.T) {
			dialect := func(*envConfig) {}
			if backend == "anthropic" {
				dialect = withAnthropicBackend
			}
			e := newEnv(t, sim.Config{ReplyTokens: 8}, withWindow(200_000), dialect, func(c *envConfig) {
				c.models[0].Aliases = []string{"claude-*"} // the small fast model it may also ask for
			})
			dir := t.TempDir()
			notes := filepath.Join(dir, "notes.txt")
			if err := os.WriteFile(notes, []byte("the secret word is obsidian\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(claude, "-p", "Use the Read tool on `"+notes+"` and tell me the secret word",
				"--model", "hermes", "--output-format", "json")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "ANTHROPIC_BASE_URL=" + e.gw.URL, "ANTHROPIC_API_KEY=" + keyAll,
				"DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("claude: %v\n%s\n%s", err, out, stderr.String())
			}
			var res claudeResult
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("claude's output: %v\n%s", err, out)
			}
			if res.IsError || res.NumTurns != 2 || res.Result != sim.Reply(8) {
				t.Errorf("claude: %s", out)
			}
			var toolResult bool
			for _, rec := range e.sim.Requests() {
				b := string(rec.Body) // a tool message toward OpenAI, a tool_result block toward Anthropic
				toolResult = toolResult || (strings.Contains(b, `"role":"tool"`) || strings.Contains(b, `"type":"tool_result"`)) && strings.Contains(b, "the secret word is obsidian")
			}
			if !toolResult {
				t.Error("no request carried the file, read by Claude Code's Read tool, as a tool result")
			}
			st := e.sim.Stats()
			if res.Usage.InputTokens != st.ReportedPrompt || res.Usage.OutputTokens != st.ReportedTokens {
				t.Errorf("claude reports %d in, %d out; the backend reported %d, %d", res.Usage.InputTokens, res.Usage.OutputTokens, st.ReportedPrompt, st.ReportedTokens)
			}
			poll.Until(t, "the ledger to hold what the backend reported", func() bool {
				got := ledgerTotal(e.usageOf(t, keyAll, ""))
				return got.Prompt == st.ReportedPrompt && got.Completion == st.ReportedTokens && got.Requests == st.Requests
			})
		})
	}
}
