package usage

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Store keeps the ledger's rows: PostgreSQL or Embedded.
type Store interface {
	// Write adds each record once by its request id; repeating a write
	// (after a timeout whose fate is unknown) adds nothing twice.
	Write(ctx context.Context, recs []Record) error
	Summary(ctx context.Context, key, period string) (*Summary, error)
	// Buckets reads usage by time bucket for the organization reports;
	// ErrGrain for buckets finer than the store keeps.
	Buckets(ctx context.Context, q BucketQuery) ([]BucketRow, error)
}

// Options configure a Ledger.
type Options struct {
	// SpoolDir receives the records that could not be written before
	// Close, or that overflowed the queue; they are replayed from there
	// by the next Ledger on the same directory. "" means no spool: such
	// records are logged at error level, whole, and counted as lost.
	SpoolDir string
	// Capacity bounds the records queued in memory; past it, records go
	// to the spool at once. 0 means 100,000 (about 10 MB).
	Capacity int
	// Batch bounds the records of one store write; 0 means 512.
	Batch int
	// Timeout bounds one store write or read; 0 means 2 s.
	Timeout time.Duration
	// Linger is how long the writer waits, once a record arrives, for more
	// to share the write: for a store whose writes are dear (a bbolt
	// commit is an fsync). It is also how much longer a record may wait
	// for its write. 0 writes at once.
	Linger time.Duration
	// Retry is the first wait after a failed write, doubled up to 16×;
	// 0 means 100 ms.
	Retry time.Duration
	Log   *slog.Logger
	// Meter counts records delayed, spooled, replayed and lost; nil means
	// the global OpenTelemetry meter provider.
	Meter metric.Meter
}

// Ledger queues records in memory and writes them to its store in the
// background, many per round trip. A record the store cannot take stays
// queued and is retried; one that cannot be written before Close goes to
// the spool directory, and the next Ledger replays it. Every record that
// is delayed or spooled is logged whole and counted.
type Ledger struct {
	store Store
	opt   Options

	mu      sync.Mutex
	queue   []pending
	spare   []pending
	writing int           // records taken by the writer, not yet stored or put back
	gen     chan struct{} // closed once the records queued with it were tried
	failing bool          // the last write failed
	since   time.Time     // when the current outage began
	closed  bool

	kick     chan struct{}
	quit     chan struct{}
	closeCtx context.Context
	stopped  chan struct{}
	spilled  atomic.Bool // the spool may hold records to replay

	spool spool

	delayed, spooled, replayed, lost metric.Int64Counter
}

type pending struct {
	rec     Record
	delayed bool // logged and counted as delayed already
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// NewLedger starts a ledger over store. It replays in the background what
// an earlier run left in the spool.
func NewLedger(store Store, o Options) *Ledger {
	if o.Capacity <= 0 {
		o.Capacity = 100_000
	}
	if o.Batch <= 0 {
		o.Batch = 512
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.Meter("github.com/obol/obol/usage")
	}
	l := &Ledger{
		store: store, opt: o,
		gen:  make(chan struct{}),
		kick: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{}),
		spool: spool{dir: o.SpoolDir},
	}
	l.delayed, _ = o.Meter.Int64Counter("obol.usage.records.delayed",
		metric.WithDescription("Usage records not written at their first attempt; each is retried until written or spooled"))
	l.spooled, _ = o.Meter.Int64Counter("obol.usage.records.spooled",
		metric.WithDescription("Usage records written to the spool file, to be replayed into the ledger"))
	l.replayed, _ = o.Meter.Int64Counter("obol.usage.records.replayed",
		metric.WithDescription("Usage records replayed from the spool into the ledger"))
	l.lost, _ = o.Meter.Int64Counter("obol.usage.records.lost",
		metric.WithDescription("Usage records neither written nor spooled (no spool directory, or it failed); each is logged whole"))
	o.Meter.Int64ObservableGauge("obol.usage.queue.length",
		metric.WithDescription("Usage records queued in memory, not yet written"),
		metric.WithInt64Callback(func(_ context.Context, ob metric.Int64Observer) error {
			l.mu.Lock()
			n := len(l.queue)
			l.mu.Unlock()
			ob.Observe(int64(n))
			return nil
		}))
	l.spilled.Store(o.SpoolDir != "")
	go l.run()
	return l
}

// Record queues rec. The returned channel is closed once the write that
// carries rec has been tried: a caller that waits on it returns after its
// record is stored, in the normal case, and without delay while the store
// is failing (the record then stays queued and is retried).
func (l *Ledger) Record(rec Record) <-chan struct{} {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.spill([]pending{{rec: rec}}, "the ledger is closed")
		l.spool.close() // unlocked at once, for the next ledger to replay
		return closedChan
	}
	if len(l.queue)+l.writing >= l.opt.Capacity {
		l.mu.Unlock()
		l.spill([]pending{{rec: rec}}, "the in-memory queue is full")
		return closedChan
	}
	p := pending{rec: rec}
	failing := l.failing
	if failing {
		p.delayed = true
	}
	l.queue = append(l.queue, p)
	gen := l.gen
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	if failing {
		l.logDelayed(rec, nil)
		return closedChan
	}
	return gen
}

// Close writes what is queued, retrying until ctx ends; then it spools
// the rest. Records that arrive after Close go to the spool.
func (l *Ledger) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.stopped
		return nil
	}
	l.closed = true
	l.closeCtx = ctx
	l.mu.Unlock()
	close(l.quit)
	<-l.stopped
	return l.spool.close()
}

// writerState is the writer's loop state: the channel that stops a wait
// (Close, then the Close context's end), whether it is closing, the
// context of its writes, and the wait before the next try.
type writerState struct {
	stop    <-chan struct{}
	closing bool
	base    context.Context
	wait    time.Duration
}

// run is the writer: it takes everything queued, writes it in batches,
// and on failure puts it back and waits before the next try.
func (l *Ledger) run() {
	defer close(l.stopped)
	st := &writerState{stop: l.quit, base: context.Background(), wait: l.opt.Retry}
	for {
		batch, gen := l.take()
		if len(batch) == 0 {
			close(gen)
			if st.closing {
				return
			}
			if l.spilled.Load() && !l.isFailing() {
				if err := l.replay(st.base); err != nil {
					l.opt.Log.Warn("usage spool not replayed yet; will retry", "err", err)
					if !l.pause(st) {
						return
					}
					continue
				}
			}
			select {
			case <-l.kick:
				l.linger(st.stop)
			case <-st.stop:
				l.startClosing(st)
			}
			continue
		}
		n, err := l.write(st.base, batch)
		l.done(batch, n, err)
		close(gen)
		if err == nil {
			st.wait = l.opt.Retry
			continue
		}
		if !l.pause(st) {
			return
		}
	}
}

// startClosing turns the writer to closing: its waits now end with the
// Close context, and its writes run under it.
func (l *Ledger) startClosing(st *writerState) {
	st.closing, st.stop, st.base = true, l.closeCtx.Done(), l.closeCtx
}

// linger lets more records join the write, unless closing or a batch is
// already full.
func (l *Ledger) linger(stop <-chan struct{}) {
	if l.opt.Linger <= 0 {
		return
	}
	l.mu.Lock()
	full := len(l.queue) >= l.opt.Batch
	l.mu.Unlock()
	if full {
		return
	}
	t := time.NewTimer(l.opt.Linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// pause waits before the next try after a failure. Closing, it stops when
// the Close context ends, spooling what is queued, and reports false.
func (l *Ledger) pause(st *writerState) bool {
	t := time.NewTimer(st.wait)
	defer t.Stop()
	st.wait = min(2*st.wait, 16*l.opt.Retry)
	select {
	case <-t.C:
		return true
	case <-st.stop:
	}
	if !st.closing {
		l.startClosing(st)
		return true
	}
	// The Close context is over: what is left goes to the spool.
	l.mu.Lock()
	rest := l.queue
	l.queue = nil
	l.mu.Unlock()
	l.spill(rest, "the store could not take it before shutdown")
	return false
}

// take swaps out the queue and its generation.
func (l *Ledger) take() ([]pending, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	batch, gen := l.queue, l.gen
	l.writing = len(batch)
	l.queue, l.spare = l.spare[:0], nil
	l.gen = make(chan struct{})
	return batch, gen
}

func (l *Ledger) isFailing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failing
}

// write stores batch in slices of Batch and reports how many records it
// wrote before an error.
func (l *Ledger) write(base context.Context, batch []pending) (int, error) {
	recs := make([]Record, 0, min(len(batch), l.opt.Batch))
	for i := 0; i < len(batch); i += l.opt.Batch {
		end := min(i+l.opt.Batch, len(batch))
		recs = recs[:0]
		for _, p := range batch[i:end] {
			recs = append(recs, p.rec)
		}
		ctx, cancel := context.WithTimeout(base, l.opt.Timeout)
		err := l.store.Write(ctx, recs)
		cancel()
		if err != nil {
			return i, err
		}
	}
	return len(batch), nil
}

// done puts back what a write did not store, logs what is delayed, and
// notes the store's state.
func (l *Ledger) done(batch []pending, n int, err error) {
	rest := batch[n:]
	var newlyDelayed []Record
	for i := range rest {
		if !rest[i].delayed {
			rest[i].delayed = true
			newlyDelayed = append(newlyDelayed, rest[i].rec)
		}
	}
	l.mu.Lock()
	l.writing = 0
	wasFailing := l.failing
	l.failing = err != nil
	if err != nil {
		if !wasFailing {
			l.since = time.Now()
		}
		// Put the unwritten records back in front of those queued since.
		q := make([]pending, 0, len(rest)+len(l.queue))
		q = append(append(q, rest...), l.queue...)
		l.queue = q
	} else {
		l.spare = batch[:0] // reused by the next take
	}
	since := l.since
	queued := len(l.queue)
	l.mu.Unlock()

	switch {
	case err != nil && !wasFailing:
		l.opt.Log.Error("usage ledger store unavailable; records are queued and retried", "err", err, "queued", queued)
	case err == nil && wasFailing:
		l.opt.Log.Info("usage ledger store answering again; delayed records written",
			"outage", time.Since(since).Round(time.Millisecond).String())
	}
	for _, rec := range newlyDelayed {
		l.logDelayed(rec, err)
	}
}

func (l *Ledger) logDelayed(rec Record, err error) {
	l.delayed.Add(context.Background(), 1)
	attrs := append(recordAttrs(rec), slog.String("reason", "store unavailable"))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	l.opt.Log.LogAttrs(context.Background(), slog.LevelWarn, "usage record delayed", attrs...)
}

func recordAttrs(rec Record) []slog.Attr {
	return []slog.Attr{
		slog.String("request_id", rec.RequestID),
		slog.String("key_id", rec.Key),
		slog.String("model", rec.Model),
		slog.Time("time", rec.Time),
		slog.Int64("prompt_tokens", rec.PromptTokens),
		slog.Int64("completion_tokens", rec.CompletionTokens),
	}
}
