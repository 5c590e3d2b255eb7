package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/obol/obol/internal/freeport"
	"github.com/obol/obol/internal/poll"
)

// TestImage runs the container image make image built (OBOL_TEST_IMAGE;
// make test-image sets it, skipped otherwise) as a user would: the demo
// answers /healthz and a chat from the bundled simulator, records it, and
// a SIGTERM drains it to a clean exit with the request's usage written.
func TestImage(t *testing.T) {
	image := os.Getenv("OBOL_TEST_IMAGE")
	if image == "" {
		t.Skip("set OBOL_TEST_IMAGE (make test-image builds the image and sets it)")
	}
	engine, err := exec.LookPath("podman")
	if err != nil {
		if engine, err = exec.LookPath("docker"); err != nil {
			t.Skip("neither podman nor docker")
		}
	}
	port, simPort := freeport.Get(t), freeport.Get(t)
	name := fmt.Sprintf("obol-test-%d", port)
	args := []string{"run", "-d", "--name", name, "--network", "host", "-e", fmt.Sprintf("OBOL_DEMO_SIMULATOR=127.0.0.1:%d", simPort)}
	if strings.HasSuffix(engine, "podman") {
		args = append(args, "--runtime", "runc")
	}
	// The demo configuration, its upstream moved to this test's simulator port.
	args = append(args, "-e", fmt.Sprintf("OBOL_DEMO_UPSTREAM=http://127.0.0.1:%d/v1", simPort), image,
		"serve", "-config", "/etc/obol/demo.yaml", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if out, err := exec.Command(engine, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s run: %v\n%s", engine, err, out)
	}
	t.Cleanup(func() { exec.Command(engine, "rm", "-f", name).Run() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	poll.Until(t, "the container to answer /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	req, _ := http.NewRequest("POST", base+"/v1/chat", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	req.Header.Set("Authorization", "Bearer sk-demo-pro-7b2e51")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Hello from the simulator") {
		t.Fatalf("a chat: %d %s", resp.StatusCode, body)
	}
	if out, err := exec.Command(engine, "kill", "--signal", "TERM", name).CombinedOutput(); err != nil {
		t.Fatalf("SIGTERM: %v %s", err, out)
	}
	out, _ := exec.Command(engine, "wait", name).Output()
	logs, _ := exec.Command(engine, "logs", name).CombinedOutput()
	if strings.TrimSpace(string(out)) != "0" || !strings.Contains(string(logs), `"msg":"stopped"`) || !strings.Contains(string(logs), `"prompt_tokens":`) {
		t.Errorf("exit %q after SIGTERM; logs:\n%s", out, logs)
	}
}
