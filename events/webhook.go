package events

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The request body is {"events":[...]}, assembled from the events' stored JSON without
// decoding or re-encoding them.
const (
	batchHead = `{"events":[`
	batchTail = `]}`
)

// maxDrain is how much of an answer's body is read so the connection can be reused; the
// body means nothing, only the status does.
const maxDrain = 64 << 10

func encodeBatch(batch []entry) []byte {
	n := len(batchHead) + len(batchTail)
	for _, e := range batch {
		n += len(e.body) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, batchHead...)
	for i, e := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.body...)
	}
	return append(b, batchTail...)
}

// post sends one request. Only a 2xx answer within Timeout is success: redirects are not
// followed, and any other status, a transport error or a timeout is a failure.
func (q *Queue) post(ctx context.Context, shard int, batch []entry) error {
	body := encodeBatch(batch)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	start := time.Now() // before the timeout starts, so a timed-out attempt lasts at least Timeout
	rctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, q.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard-webhook")
	req.Header.Set(HeaderTimestamp, ts)
	if q.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(q.cfg.Secret, ts, body))
	}
	status := 0
	resp, err := q.client.Do(req)
	if err == nil {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		_ = resp.Body.Close()
		if status < 200 || status > 299 {
			err = fmt.Errorf("webhook answered %s", resp.Status)
		}
	}
	if q.cfg.OnAttempt != nil {
		q.cfg.OnAttempt(Attempt{
			Shard:    shard,
			Events:   len(batch),
			Status:   status,
			Err:      err,
			Duration: time.Since(start),
			Lag:      time.Since(time.UnixMilli(batch[0].ms)),
		})
	}
	return err
}

// checkURL refuses a webhook URL that could never be posted to.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("events: webhook URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("events: webhook URL %q: want http(s)://host/...", raw)
	}
	return nil
}
