package openai

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/obol/obol/internal/chunk"
)

// Tally reads what a stream translated to another shape needs of each chat
// chunk before its choices: the backend's usage, the tokens counted here
// and the time to the first of them. It is the one place those are read,
// for the Responses events and for other wire packages' streams.
type Tally struct {
	Usage   *Usage // the backend's, nil until it reports one
	Counted int    // the tokens counted here
	ch      chunk.Chunk
}

// Relayed is what the stream carried, as Streamer.Relayed reports it.
func (t *Tally) Relayed() (*Usage, int) { return t.Usage, t.Counted }

// Read parses one chunk, notes its usage and count (and turn's time to the
// first token), and returns its choices still encoded: nil for none.
func (t *Tally) Read(data []byte, turn *Turn) (json.RawMessage, error) {
	if err := chunk.Parse(data, &t.ch); err != nil {
		return nil, fmt.Errorf("%w: event: %w", ErrBrokenStream, err)
	}
	ch := &t.ch
	if ch.Error != nil {
		return nil, fmt.Errorf("%w: error event: %.300s", ErrBrokenStream, ch.Error)
	}
	if ch.Usage != nil {
		var u Usage
		if json.Unmarshal(ch.Usage, &u) == nil {
			t.Usage = &u
		}
	}
	if ch.Counted > 0 {
		t.Counted += ch.Counted
		if turn.TTFT == 0 {
			turn.TTFT = time.Since(turn.Start)
		}
	}
	if ch.NChoices == 0 {
		return nil, nil
	}
	return ch.Choices, nil
}
