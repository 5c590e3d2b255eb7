package models

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestPeekFirstEvent: the peek holds back role-only chunks, replays all
// it read, and fails an answer that errs, ends or runs long before its
// first token.
func TestPeekFirstEvent(t *testing.T) {
	role := `data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}` + "\n\n"
	text := `data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n"
	tests := []struct {
		name, in string
		err      error
	}{
		{"role then text", role + ": keep-alive\n\n" + text + "data: [DONE]\n\n", nil},
		{"crlf", strings.ReplaceAll(role+text, "\n", "\r\n"), nil},
		{"error first", `data: {"error":{"message":"boom"}}` + "\n\n", ErrBadFirstEvent},
		{"ends after the role", role, ErrAnswerCut},
		{"cut inside the first token", role + strings.TrimSuffix(text, "\n\n"), ErrAnswerCut},
		{"no token in a megabyte", strings.Repeat(role, maxPeek/len(role)+200) + text, ErrAnswerCut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := peekFirstEvent(strings.NewReader(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if got, _ := io.ReadAll(r); string(got) != tt.in {
				t.Errorf("replayed %d bytes, want the %d read", len(got), len(tt.in))
			}
		})
	}
}
