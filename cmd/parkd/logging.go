package main

import (
	"context"
	"fmt"
	"log/slog"
)

// redisLog sends go-redis' own messages (a pool that cannot dial, a failover)
// to parkd's log, so that production logs stay one JSON object a line.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
