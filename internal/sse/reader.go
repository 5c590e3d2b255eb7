// Package sse reads server-sent events: the one reader of both the
// backend attempt's first-event peek (models) and the stream relay
// (gateway).
package sse

import (
	"bufio"
	"bytes"
	"io"
)

// Reader reads the data of server-sent events.
type Reader struct {
	r    *bufio.Reader
	data []byte
	line []byte
	eof  bool
}

// NewReader reads events from r through a buffer of size bytes; a line
// longer than the buffer is joined whole.
func NewReader(r io.Reader, size int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, size)}
}

// Next returns the data of the next event with data, its "data:" lines
// joined by newlines; its bytes are valid until the next call. An event
// cut by the end of the input is returned (see EOF) before io.EOF.
func (er *Reader) Next() ([]byte, error) {
	er.data = er.data[:0]
	has := false
	for {
		line, err := er.readLine()
		if err != nil {
			if err == io.EOF {
				er.eof = true
				if has {
					return er.data, nil
				}
			}
			return nil, err
		}
		if len(line) == 0 {
			if has {
				return er.data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		if string(field) == "data" {
			if has {
				er.data = append(er.data, '\n')
			}
			er.data = append(er.data, value...)
			has = true
		}
	}
}

// EOF reports whether the input has ended: an event Next returned then
// was not terminated by a blank line.
func (er *Reader) EOF() bool { return er.eof }

// Complete reports whether a whole event is already buffered, so that
// reading it will not wait on the input.
func (er *Reader) Complete() bool {
	n := er.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := er.r.Peek(n)
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n"))
}

// readLine returns one line without its end of line (LF or CRLF).
func (er *Reader) readLine() ([]byte, error) {
	line, err := er.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		er.line = append(er.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = er.r.ReadSlice('\n')
			er.line = append(er.line, line...)
		}
		line = er.line
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return bytes.TrimRight(line, "\r\n"), nil
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
