package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Queue queues the i-th command of a pipeline on p and returns it, with the script it calls
// by SHA (nil for a command that is not a script call).
type Queue func(p redis.Pipeliner, i int) (redis.Cmder, *redis.Script)

// Scripts sends pipelines of commands, script calls by SHA among them, on one client.
// Inside a pipeline go-redis has no EVAL fallback: a server that lost its script cache
// (restart, failover, SCRIPT FLUSH) fails those calls with NOSCRIPT. Such a call did not
// run, so Exec loads its script and sends exactly the calls that failed so again, once;
// running anything twice could store a message twice.
type Scripts struct {
	// Client is where the pipelines go.
	Client redis.UniversalClient
	// Observe, when set, is told each round trip's duration and error.
	Observe func(took time.Duration, err error)
	// After, when set, queues commands at the end of every pipeline Exec sends (a WAIT
	// for replicas, which covers the writes before it on its connection).
	After func(p redis.Pipeliner)
}

// Exec sends n commands, queued by queue, as one pipeline, then the NOSCRIPT failures again
// once their scripts are loaded; queue is called again for each of those, and what it
// returns then replaces what it returned first. Exec returns the first command error (a
// failed load is the error of the calls it left unsent).
func (s Scripts) Exec(ctx context.Context, n int, queue Queue) error {
	cmds := make([]queued, n)
	s.send(ctx, cmds, nil, queue)
	var again []int
	var loaded map[*redis.Script]error
	for i, c := range cmds {
		if c.script == nil || !isNoScript(c.cmd.Err()) {
			continue
		}
		if loaded == nil {
			loaded = make(map[*redis.Script]error)
		}
		lerr, ok := loaded[c.script]
		if !ok {
			lerr = c.script.Load(ctx, s.Client).Err()
			loaded[c.script] = lerr
		}
		if lerr != nil {
			c.cmd.SetErr(fmt.Errorf("load script: %w", lerr))
			continue
		}
		again = append(again, i)
	}
	if len(again) > 0 {
		s.send(ctx, cmds, again, queue)
	}
	for _, c := range cmds {
		if err := c.cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

// queued is one command of a pipeline and the script it calls, if it is a script call.
type queued struct {
	cmd    redis.Cmder
	script *redis.Script
}

// send queues the commands numbered in only (all when nil) into one pipeline and sends it.
func (s Scripts) send(ctx context.Context, cmds []queued, only []int, queue Queue) {
	pipe := s.Client.Pipeline()
	if only == nil {
		for i := range cmds {
			cmds[i].cmd, cmds[i].script = queue(pipe, i)
		}
	} else {
		for _, i := range only {
			cmds[i].cmd, cmds[i].script = queue(pipe, i)
		}
	}
	if s.After != nil {
		s.After(pipe)
	}
	start := time.Now()
	_, err := pipe.Exec(ctx)
	if s.Observe != nil {
		s.Observe(time.Since(start), err)
	}
}

// isNoScript reports whether err is Redis's NOSCRIPT answer: the script was not in the
// server's cache, and did not run.
func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}
