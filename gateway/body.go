package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/obol/obol/internal/apierr"
)

// DefaultBodyTimeout bounds the time to receive a request body when
// Options.BodyTimeout is 0.
const DefaultBodyTimeout = 30 * time.Second

// maxDrain is as much of a body the handler did not read as is read and
// dropped so that the connection can serve its next request; past it,
// Go's server closes the connection instead.
const maxDrain = 256 << 10

// errBodyTimeout answers a body that did not arrive in time.
var errBodyTimeout = &apierr.Error{Code: apierr.CodeRequestTimeout, Message: "the request body did not arrive in time"}

// limitBody bounds the time to receive r's body, from the request's
// arrival: the connection's read deadline is set now and lifted once the
// body has been read to its end, so that a long answer (a stream) is not
// cut by it. A body read past the deadline fails with errBodyTimeout.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.live.Load().BodyTimeout)) != nil {
		return // a writer without deadlines (not a connection)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody is a request body under a read deadline.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool // read to the end: the deadline is lifted
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = errBodyTimeout
	}
	return n, err
}

// drainBody reads what is left of a body the handler did not read (up to
// maxDrain), under its deadline, before an answer is written: a body
// trickled in slowly is answered 408 when its time is up, rather than
// holding the answer back until Go's server has drained it.
func drainBody(r *http.Request) *apierr.Error {
	b, ok := r.Body.(*deadlineBody)
	if !ok || b.done {
		return nil
	}
	_, err := io.CopyN(io.Discard, b, maxDrain+1)
	if errors.Is(err, errBodyTimeout) {
		return errBodyTimeout
	}
	return nil
}

// takesBody reports whether a method's requests carry a body obol reads.
func takesBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut
}
