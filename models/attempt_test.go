package models

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/obol/obol/internal/sse"
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
	t.Run("connection broken off", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader(role), iotest.ErrReader(io.ErrUnexpectedEOF))
		if _, err := peekFirstEvent(r, OpenAI); !errors.Is(err, ErrAnswerCut) {
			t.Fatalf("err %v, want %v", err, ErrAnswerCut)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := peekFirstEvent(strings.NewReader(tt.in), OpenAI)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			// Every event of the stream comes out, the held ones first.
			want := sse.NewReader(strings.NewReader(tt.in), 4<<10)
			for i := 0; ; i++ {
				w, werr := want.Next()
				g, gerr := ev.Next()
				if string(g) != string(w) || (gerr == nil) != (werr == nil) {
					t.Fatalf("event %d: %q, %v; want %q, %v", i, g, gerr, w, werr)
				}
				if werr != nil {
					break
				}
			}
		})
	}
}
