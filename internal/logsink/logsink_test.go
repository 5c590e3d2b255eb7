package logsink

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer counts the writes it gets.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLinesWholeAndAllWritten: lines written at once from many goroutines
// come out whole, each once, in far fewer writes than lines; Close
// writes the rest.
func TestLinesWholeAndAllWritten(t *testing.T) {
	var out lockedBuffer
	s := New(&out, time.Hour)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				fmt.Fprintf(s, "{\"g\":%d,\"i\":%d,\"pad\":%q}\n", g, i, strings.Repeat("x", i%50))
			}
		}()
	}
	wg.Wait()
	s.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{\"g\":") || !strings.HasSuffix(l, "\"}") || seen[l] {
			t.Fatalf("a torn or repeated line: %q", l)
		}
		seen[l] = true
	}
	if len(seen) != 16000 || out.writes > 16000/20 {
		t.Errorf("%d lines in %d writes", len(seen), out.writes)
	}
}

// TestFlushedOnTheInterval: a line reaches the output without Close.
func TestFlushedOnTheInterval(t *testing.T) {
	var out lockedBuffer
	s := New(&out, 10*time.Millisecond)
	defer s.Close()
	s.Write([]byte("one\n"))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatal("the line was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
