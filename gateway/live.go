package gateway

import (
	"errors"
	"time"

	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
)

// Live is the part of the gateway's configuration a reload changes: the
// models and their backends and timeouts, prices, CORS origins, and the
// body and keep-alive timeouts. A request uses the Live in force when it
// arrived to its end; the next one sees a new one.
type Live struct {
	Catalog *models.Catalog
	Prices  map[string]money.Prices
	CORS    CORS
	// BodyTimeout bounds the time to receive a request body; 0 means
	// DefaultBodyTimeout. KeepAlive is the SSE comment interval while a
	// stream waits; 0 means 10 seconds.
	BodyTimeout, KeepAlive time.Duration
}

func (l *Live) withDefaults() *Live {
	c := *l
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 10 * time.Second
	}
	return &c
}

// Reconfigure puts l in force for the requests that arrive from now on;
// those in flight finish on the one they started with.
func (s *Server) Reconfigure(l Live) error {
	if l.Catalog == nil {
		return errors.New("gateway: a Live needs a Catalog")
	}
	s.live.Store(l.withDefaults())
	s.ready.forget()
	return nil
}
