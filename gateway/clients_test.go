package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

func goClient(baseURL, key string) *openai.Client {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = baseURL + "/v1"
	return openai.NewClientWithConfig(cfg)
}

// TestGoOpenAI drives the gateway with go-openai, unchanged but for its base URL.
func TestGoOpenAI(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 6})
	ctx := context.Background()
	c := goClient(e.gw.URL, keyAll)
	msgs := []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}}

	resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "hermes", Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != "hermes" || resp.Choices[0].Message.Content != sim.Reply(6) || resp.Usage.CompletionTokens != 6 {
		t.Errorf("completion %+v", resp)
	}

	for _, includeUsage := range []bool{false, true} {
		req := openai.ChatCompletionRequest{Model: "hermes", Messages: msgs, Stream: true}
		if includeUsage {
			req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
		}
		stream, err := c.CreateChatCompletionStream(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		text, usage := "", 0
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(chunk.Choices) > 0 {
				text += chunk.Choices[0].Delta.Content
			}
			if chunk.Usage != nil {
				usage = chunk.Usage.CompletionTokens
			}
		}
		stream.Close()
		wantUsage := 0
		if includeUsage {
			wantUsage = 6
		}
		if text != sim.Reply(6) || usage != wantUsage {
			t.Errorf("include_usage=%v: text %q usage %d", includeUsage, text, usage)
		}
	}

	list, err := c.ListModels(ctx)
	if err != nil || len(list.Models) != 2 || list.Models[1].ID != "hermes" {
		t.Errorf("models %+v, %v", list, err)
	}

	_, err = goClient(e.gw.URL, "sk-nope").CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "hermes", Messages: msgs})
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 401 || apiErr.Code != "unauthorized" {
		t.Errorf("401: %v", err)
	}
	_, err = c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "nope", Messages: msgs})
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 404 {
		t.Errorf("404: %v", err)
	}
}

func TestGoOpenAIStreamError(t *testing.T) {
	e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.StreamError, After: 2}})
	stream, err := goClient(e.gw.URL, keyAll).CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "hermes", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}, Stream: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "upstream_error" {
		t.Errorf("want the error event as an APIError, got %v", err)
	}
}

// nodeDir holds the npm packages the client tests drive the gateway with
// (`make test` runs npm ci there).
var nodeDir = filepath.Join("testdata", "openai-node")

// runNode runs a script of nodeDir with env, and fails the test unless it
// ends with "N checks: 0 failed". Without node or the packages it skips,
// except in CI.
func runNode(t *testing.T, script, pkg string, env ...string) {
	t.Helper()
	runNodeIn(t, nodeDir, script, pkg, env...)
}

// runNodeIn is runNode with the packages and script of dir.
func runNodeIn(t *testing.T, dir, script, pkg string, env ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("drives the npm clients: skipped under -short")
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", pkg))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (run make test, which runs npm ci in %s): %v", pkg, dir, err)
		}
		t.Skipf("node or the npm package %s is missing (make test installs it): %v", pkg, err)
	}
	cmd := exec.Command(node, script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", script, out)
	if err != nil {
		t.Fatalf("node checks failed: %v", err)
	}
	if !strings.Contains(string(out), "checks: 0 failed") {
		t.Fatal("node checks did not finish")
	}
}

// TestOpenAINodeClient runs the official openai npm client against the
// gateway: chat, streams, responses, embeddings, legacy completions, the
// errors, and its admin client's organization usage and costs.
func TestOpenAINodeClient(t *testing.T) {
	for _, backend := range []string{"openai", "anthropic"} {
		t.Run(backend+" backend", func(t *testing.T) {
			dialect, chatOnly := envOption(withAPIs), "0"
			if backend == "anthropic" {
				dialect, chatOnly = withAnthropicBackend, "1" // it serves chat alone
			}
			e := newEnv(t, sim.Config{ReplyTokens: 8}, dialect, withEmbeddedAdmin(t))
			faulty := newEnv(t, sim.Config{ReplyTokens: 8, Fault: sim.Fault{Kind: sim.StreamError, After: 2}}, dialect)
			limited := newEnv(t, sim.Config{ReplyTokens: 8}, dialect, withQuota(redisLimiter(t)), withLimits(keyAll, quota.Limits{RPM: 2, TPM: 1000}))
			runNode(t, "check.mjs", "openai",
				"OBOL_BASE_URL="+e.gw.URL+"/v1",
				"OBOL_FAULT_BASE_URL="+faulty.gw.URL+"/v1",
				"OBOL_LIMITED_BASE_URL="+limited.gw.URL+"/v1",
				"OBOL_KEY_ALL="+keyAll,
				"OBOL_KEY_HERMES="+keyHermes,
				"OBOL_ADMIN_TOKEN="+adminToken,
				"OBOL_CHAT_ONLY="+chatOnly,
			)
			// Every route's usage is in the ledger, as the backend reported it
			// (the last records are written a moment after their answers).
			st := e.sim.Stats()
			poll.Until(t, "the ledger to hold what the backend reported", func() bool {
				row := e.usageOf(t, keyAll, "").ByModel["hermes"]
				return row.Prompt == st.ReportedPrompt && row.Completion == st.ReportedTokens
			})
		})
	}
}

// TestVercelAISDK runs the AI SDK's default OpenAI provider (the
// Responses API) against the gateway: generateText, streamText with
// usage, a tool over two steps.
func TestVercelAISDK(t *testing.T) {
	for _, backend := range []string{"openai", "anthropic"} {
		t.Run(backend+" backend", func(t *testing.T) {
			var opts []envOption
			if backend == "anthropic" {
				opts = append(opts, withAnthropicBackend)
			}
			e := newEnv(t, sim.Config{ReplyTokens: 13}, opts...)
			runNode(t, "aisdk.mjs", "ai", "OBOL_BASE_URL="+e.gw.URL+"/v1", "OBOL_KEY_ALL="+keyAll)
			s := e.waitRecorded(t, keyAll, 4)
			if st := e.sim.Stats(); s.ByModel["hermes"].Completion != st.ReportedTokens || s.ByModel["hermes"].Prompt != st.ReportedPrompt {
				t.Errorf("ledger %+v, backend reported %d + %d", s.ByModel["hermes"], st.ReportedPrompt, st.ReportedTokens)
			}
		})
	}
}

// TestGoOpenAIRateLimit: go-openai sees a refused admission as an APIError
// with status 429 and the API's code.
func TestGoOpenAIRateLimit(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withQuota(redisLimiter(t)), withLimits(keyAll, quota.Limits{RPM: 1}))
	c := goClient(e.gw.URL, keyAll)
	req := openai.ChatCompletionRequest{Model: "hermes", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
	if _, err := c.CreateChatCompletion(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateChatCompletion(context.Background(), req)
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 429 || apiErr.Code != "rate_limit" || apiErr.Type != "rate_limit_exceeded" {
		t.Errorf("second request: %v", err)
	}
}

// TestBrowserCrossOrigin opens, in headless Chromium, a page served from
// another origin than the gateway; the page streams a chat with fetch and
// reads x-ratelimit-remaining-requests, which CORS must let it do.
func TestBrowserCrossOrigin(t *testing.T) {
	chromium := chromiumPath(t)
	e := newEnv(t, sim.Config{ReplyTokens: 5}, withLimits(keyAll, quota.Limits{RPM: 10}), func(c *envConfig) {
		c.CORS = gateway.CORS{AllowedOrigins: []string{"http://127.0.0.1:*"}}
	})
	page, err := os.ReadFile(filepath.Join(nodeDir, "cors-page.html"))
	if err != nil {
		t.Fatal(err)
	}
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	}))
	defer site.Close()
	q := url.Values{"gateway": {e.gw.URL}, "key": {keyAll}}
	runNode(t, "browser.mjs", "playwright-core",
		"OBOL_PAGE_URL="+site.URL+"/?"+q.Encode(), "CHROMIUM="+chromium,
		"OBOL_WANT_TEXT="+sim.Reply(5), "OBOL_WANT_REMAINING=9")
}
