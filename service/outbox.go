package service

import (
	"io"
	"sync"
	"time"
)

// outboxConn is the socket an outbox writes its frames to; a net.Conn is one.
type outboxConn interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
	Close() error
}

// outboxLimits bound an outbox: its queue in frames and bytes, and one write's time.
type outboxLimits struct {
	maxMessages  int
	maxBytes     int
	writeTimeout time.Duration
}

// outbox is one connection's bounded outgoing queue. Any goroutine may push a frame (the
// hub's dispatch, the read loop) and never waits on the socket; drain jobs, run one at a
// time by whatever schedule arranges (gws's per-connection write queue), write what is
// queued. A push over the bounds is refused, and the caller closes the connection: a
// client that does not read is closed rather than allowed to hold the node's memory.
//
// Two locks, taken in the order wmu, mu: mu guards the queue's bookkeeping and is never
// held across a write, so that a push never waits on the socket; wmu orders the socket
// writes, a drain's batch against the close frame (see exclusive), so that the close frame
// never lands inside a batch and no data frame follows it.
type outbox struct {
	conn     outboxConn
	schedule func() // arranges for drain to run once, after any job already scheduled
	lim      outboxLimits
	// writeFrames, when set, writes a batch instead of writeTextFrames on conn: a
	// connection that negotiated compression (compressedWriter). Set before o is shared.
	writeFrames func(frames [][]byte) error
	// try and now, when set (see useWriteQueue), write without waiting: now arranges for
	// drainNow to run on the node's shared writers, which try writes a batch with.
	try func(frames [][]byte) tryResult
	now func()

	wmu           sync.Mutex
	writeDeadline time.Time // the socket's write deadline drain last set; under wmu

	mu      sync.Mutex
	queue   [][]byte
	spare   [][]byte // the previous batch's array, reused for the next queue
	bytes   int      // queued and not yet written
	writing bool     // a drain job is scheduled
	closed  bool
	// onDrained continues a paced replay once the queue has drained (see room).
	onDrained func()
}

// init readies o to write to conn; it is called once, before o is shared.
func (o *outbox) init(conn outboxConn, schedule func(), lim outboxLimits) {
	o.conn, o.schedule, o.lim = conn, schedule, lim
}

// useWriteQueue has o's batches written first by now's jobs, without waiting, with try;
// schedule's jobs then write only what a socket did not take at once. Called once, after
// init and before o is shared.
func (o *outbox) useWriteQueue(now func(), try func(frames [][]byte) tryResult) {
	o.now, o.try = now, try
}

// pushResult is what push did with a frame.
type pushResult uint8

const (
	pushQueued pushResult = iota // queued; a drain job will write it
	pushFull                     // refused: the queue is over its bounds
	pushClosed                   // discarded: the outbox is shut, nothing will be written
)

// push adds frame to the queue and schedules a drain job unless one is scheduled already.
func (o *outbox) push(frame []byte) pushResult {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return pushClosed
	}
	if len(o.queue) >= o.lim.maxMessages || o.bytes+len(frame) > o.lim.maxBytes {
		o.mu.Unlock()
		return pushFull
	}
	o.queue = append(o.queue, frame)
	o.bytes += len(frame)
	schedule := !o.writing
	o.writing = true
	o.mu.Unlock()
	if schedule {
		o.start()
	}
	return pushQueued
}

// start arranges for what is queued to be written: by the shared writers if o has them,
// by a drain job otherwise. Called with o.writing just set.
func (o *outbox) start() {
	if o.now != nil {
		o.now()
		return
	}
	o.schedule()
}

// room tells a paced replay whether a page of n bytes may be queued now: the queue may
// hold up to limit bytes of it (the half of the replay's budget that is not read ahead)
// and at most half the queue's bounds, and an empty queue takes any page. If not, resume
// is called once the queue has drained to a quarter of its bounds. A shut outbox has no
// room, and never will: the replay is over (its subscription is closed with the connection).
func (o *outbox) room(n, limit int, resume func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	limit = min(limit, o.lim.maxBytes/2)
	empty := len(o.queue) == 0 && o.bytes == 0 // even a page over the limit fits then
	if empty || len(o.queue) < o.lim.maxMessages/2 && o.bytes+n <= limit {
		return true
	}
	o.onDrained = resume
	return false
}

// take takes the queued batch, and its size in bytes, for a drain to write.
func (o *outbox) take() (batch [][]byte, n int) {
	o.mu.Lock()
	batch = o.queue
	o.queue, o.spare = o.spare[:0], nil
	o.mu.Unlock()
	for _, frame := range batch {
		n += len(frame)
	}
	return batch, n
}

// drain writes what is queued, one batch per job so that other jobs queued behind it
// (pings) go out. The frames of a batch go out in one system call (writev): under fan-out
// or a replay a connection often has several queued, and it is the call, not the bytes,
// that costs. A failed write closes the socket, as gws does; the read loop then ends.
func (o *outbox) drain() {
	batch, n := o.take()
	o.wmu.Lock()
	o.mu.Lock()
	closed := o.closed // no data frame may follow the close frame
	o.mu.Unlock()
	if !closed {
		// Moving the deadline costs a timer update in the runtime; it is moved only once
		// half of writeTimeout has passed, so a write may block for ½–1 × writeTimeout.
		if now := time.Now(); o.writeDeadline.Sub(now) < o.lim.writeTimeout/2 {
			o.writeDeadline = now.Add(o.lim.writeTimeout)
			_ = o.conn.SetWriteDeadline(o.writeDeadline)
		}
		if err := o.write(batch); err != nil {
			_ = o.conn.Close()
		}
	}
	o.wmu.Unlock()
	o.mu.Lock()
	o.bytes -= n
	clear(batch)
	o.spare = batch[:0]
	more := len(o.queue) > 0 && !o.closed
	o.writing = more
	var resume func()
	if o.onDrained != nil && len(o.queue) < o.lim.maxMessages/4 && o.bytes < o.lim.maxBytes/4 {
		resume, o.onDrained = o.onDrained, nil
	}
	o.mu.Unlock()
	if more {
		o.start()
	}
	if resume != nil {
		resume()
	}
}

// drainNow is drain for the node's shared writers (writeQueue), which must never wait on a
// socket: it writes the queued batch as far as the socket takes it at once, and leaves the
// rest to a drain job on the connection's own queue, which may wait. A batch the socket
// took none of goes back to the front of the queue; part of one stays with the socket
// (handshakeConn.tryWriteBuffers), to go out ahead of anything else.
func (o *outbox) drainNow() {
	batch, n := o.take()
	res := tryRefused
	if o.wmu.TryLock() { // else the close frame is being written: the drain job waits for it
		o.mu.Lock()
		closed := o.closed
		o.mu.Unlock()
		if closed {
			res = tryWritten // dropped, as drain drops it
		} else {
			res = o.try(batch)
		}
		o.wmu.Unlock()
	}
	o.mu.Lock()
	if res == tryRefused && !o.closed {
		o.queue = append(batch, o.queue...)
	} else { // written, kept by the socket, or dropped with a shut outbox, as drain drops it
		o.bytes -= n
		clear(batch)
		o.spare = batch[:0]
	}
	wait := res != tryWritten && !o.closed // a drain job writes the rest
	more := len(o.queue) > 0 && !o.closed
	o.writing = wait || more
	var resume func()
	if !wait && o.onDrained != nil && len(o.queue) < o.lim.maxMessages/4 && o.bytes < o.lim.maxBytes/4 {
		resume, o.onDrained = o.onDrained, nil
	}
	o.mu.Unlock()
	switch {
	case wait:
		o.schedule()
	case more:
		o.now()
	}
	if resume != nil {
		resume()
	}
}

// write writes a batch of frames to the socket.
func (o *outbox) write(batch [][]byte) error {
	if o.writeFrames != nil {
		return o.writeFrames(batch)
	}
	return writeTextFrames(o.conn, batch)
}

// shut ends the outbox: what is queued is dropped, later pushes are discarded, and no
// drain writes again. It reports whether this call shut it; only then is first called,
// under the lock, so that what the first closer starts is accounted for before any later
// shut returns (see client.close).
func (o *outbox) shut(first func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.closed = true
	o.queue = nil
	if first != nil {
		first()
	}
	return true
}

// exclusive runs write, a write to the socket outside the queue (the close frame), after
// the batch being written and never inside one.
func (o *outbox) exclusive(write func()) {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	write()
}
