package main

import (
	"context"
	"time"
)

// connsBuffer is the frame buffer of a held connection: it receives its welcome and
// nothing else, so the smallest buffer keeps 10,000 connections cheap for the tool.
const connsBuffer = 2

// runConns opens many connections as fast as the dialers can, holds them, and closes them.
func runConns(ctx context.Context, cfg config, prog *progress) (*Result, error) {
	res := newResult(cfg)
	n, closeNodes, err := openNodes(ctx, cfg, prog)
	if err != nil {
		return nil, err
	}
	defer closeNodes()
	perTarget := (cfg.conns + len(cfg.urls) - 1) / len(cfg.urls)
	if w := portRangeWarning(perTarget); w != "" {
		res.Warnings = append(res.Warnings, w)
		prog.printf("warning: %s", w)
	}
	ids := userIDs(cfg.userPrefix, "c", cfg.conns)
	if err := n.prepare(ctx, ids); err != nil {
		return nil, err
	}

	before := watchProcs(cfg)
	prog.printf("opening %d connections to %d node(s) with %d dialers", len(ids), len(cfg.urls), cfg.dialers)
	cr := n.connectAll(ctx, ids, cfg.dialers, connsBuffer, cfg.dialTimeout, prog)
	defer closeAll(cr.conns, cfg.dialers)
	res.Connect = cr.report()
	// CPU is measured over the storm, memory once the connections have settled.
	before.fill(res, cfg, int64(cr.ok), cr.ok)
	prog.printf("opened %d connections in %.2fs (%.0f/s), %d failed; holding them %s",
		cr.ok, cr.elapsed.Seconds(), res.Connect.PerSecond, res.Connect.Failed, cfg.hold)

	select {
	case <-ctx.Done():
		res.Interrupted = true
	case <-time.After(cfg.hold):
	}
	held := watchProcs(cfg)
	settleRSS(res.Server, before.server, held.server, cr.ok)
	settleRSS(res.Tool, before.self, held.self, cr.ok)
	for _, c := range cr.conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			res.Connect.Dropped++
		default:
		}
	}
	res.judge()
	return res, nil
}

// settleRSS replaces the RSS of a report with a later reading.
func settleRSS(r *ProcReport, before, after procSample, conns int) {
	if r == nil || r.Error != "" || after.err != nil {
		return
	}
	r.RSSAfterMB = round1(float64(after.rss) / (1 << 20))
	if conns > 0 {
		r.RSSPerConnKB = round1(float64(after.rss-before.rss) / 1024 / float64(conns))
	}
}
