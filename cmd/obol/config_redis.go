package main

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/quota"
)

// The Redis settings: their check, and the client they make.

// check checks the Redis settings and gives them their defaults.
func (r *RedisConfig) check() error {
	if err := oneOf("redis.mode", &r.Mode, "single", "single", "cluster", "sentinel"); err != nil {
		return err
	}
	if err := oneOf("redis.fail_mode", &r.FailMode, "open", "open", "closed"); err != nil {
		return err
	}
	if r.Prefix == "" {
		r.Prefix = "obol:"
	}
	if r.Timeout < 0 {
		return invalid("redis.timeout", "must not be negative")
	}
	if r.Timeout == 0 {
		r.Timeout = quota.DefaultTimeout
	}
	if r.Replicas < 0 {
		return invalid("redis.replicas", "must not be negative")
	}
	if err := r.checkSlices(); err != nil {
		return err
	}
	if r.URL == "" {
		return nil
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
		return invalid("redis.url", "want redis://, rediss:// or unix://, got %q", redactURL(r.URL))
	}
	if _, err := r.client(); err != nil {
		return invalid("redis.url", "%v", err)
	}
	return nil
}

// checkSlices reads redis.slices: a duration from 10ms to 10s, or off.
func (r *RedisConfig) checkSlices() error {
	switch r.Slices {
	case "":
		r.sliceActive = time.Second
		return nil
	case "off":
		r.sliceActive = 0
		return nil
	}
	d, err := time.ParseDuration(r.Slices)
	if err != nil || d < 10*time.Millisecond || d > 10*time.Second {
		return invalid("redis.slices", "want a duration from 10ms to 10s (how long an allowance slice admits) or off, got %q", r.Slices)
	}
	r.sliceActive = d
	return nil
}

// client returns a go-redis client for the configuration, without
// connecting.
func (r *RedisConfig) client() (redis.UniversalClient, error) {
	switch r.Mode {
	case "cluster":
		o, err := redis.ParseClusterURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("cluster URL: %w", err)
		}
		r.tune(&o.MaxRetries, &o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return redis.NewClusterClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("sentinel URL: %w", err)
		}
		if o.MasterName == "" {
			return nil, errors.New("sentinel URL: ?master_name= is required")
		}
		r.tune(&o.MaxRetries, &o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return redis.NewFailoverClient(o), nil
	}
	o, err := redis.ParseURL(r.URL)
	if err != nil {
		return nil, err
	}
	r.tune(&o.MaxRetries, &o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
	return redis.NewClient(o), nil
}

// tune is the one place that sets what every go-redis client of obol's
// needs, whatever its mode: it never retries a command (a retried
// admission script could charge a key twice), and every call is bounded
// by Timeout through its context.
func (r *RedisConfig) tune(retries *int, ctxTimeout *bool, dial, read, write, pool *time.Duration) {
	*retries, *ctxTimeout = -1, true
	*dial = max(r.Timeout, time.Second)
	*read, *write, *pool = r.Timeout, r.Timeout, r.Timeout
}
