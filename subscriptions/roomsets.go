package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/internal/pipeline"
)

// roomsRead is one read of a user's room set and its answer.
type roomsRead struct {
	key   string
	rooms []string
	err   error
}

// roomsReads batches the reads of users' room sets. Every new connection reads its user's
// rooms for the welcome before the upgrade; in a connect storm those reads share round
// trips (and pooled connections) instead of taking one each. The callers lead, so it needs
// no goroutine of its own.
type roomsReads = pipeline.Batcher[roomsRead]

func newRoomsReads(rdb redis.UniversalClient) *roomsReads {
	return pipeline.New(pipeline.Config[roomsRead]{MaxBatch: 256, CallersLead: true,
		Send: func(ctx context.Context, batch []*roomsRead) { readRoomSets(ctx, rdb, batch) }})
}

// readRoomSets reads each read's set in one pipeline, sorted.
func readRoomSets(ctx context.Context, rdb redis.UniversalClient, batch []*roomsRead) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(batch))
	for i, r := range batch {
		cmds[i] = pipe.SMembers(ctx, r.key)
	}
	_, _ = pipe.Exec(ctx)
	for i, r := range batch {
		v, err := cmds[i].Result()
		if err != nil {
			r.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			continue
		}
		sort.Strings(v)
		r.rooms = v
	}
}

// roomSet returns the members of the set at key, sorted, through the batched reads.
func (h *Hub) roomSet(ctx context.Context, key string) ([]string, error) {
	r, err := h.roomsReads.Do(ctx, roomsRead{key: key})
	switch {
	case errors.Is(err, pipeline.ErrClosed):
		return nil, ErrClosed
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return r.rooms, r.err
}
