package caddymodule

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

func init() {
	redis.SetLogger(redisLogger{})
}

// redisLogger sends go-redis's own log lines (a node it cannot dial, Sentinel announcing a new
// master) to Caddy's log under the logger name "redis", instead of bare lines on standard error.
type redisLogger struct{}

// Printf implements go-redis's logging interface.
func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("redis").Warn(fmt.Sprintf(format, v...))
}
