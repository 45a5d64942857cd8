package service

import "sync"

// writeQueue runs the connections' write jobs on a few goroutines that every connection of
// the node shares, started when jobs come and gone when there are none. A room message
// queues a frame on each member's connection; with a job on each connection's own write
// queue, that made one goroutine per member per message, and creating, scheduling and
// ending them cost more of the node's CPU than writing the frames, on the one core a
// 1,000-member fan-out ran on. A shared job must never wait on a socket, or one client that
// does not read would hold up every other: what a socket does not take at once is left to a
// job on the connection's own queue (see outbox.drainNow).
type writeQueue struct {
	mu      sync.Mutex
	jobs    []func()
	head    int // jobs[head:] are waiting
	running int
	max     int // at most this many goroutines run jobs: one per core is all they can use
}

func newWriteQueue(workers int) *writeQueue { return &writeQueue{max: max(workers, 1)} }

// add queues job, and starts a goroutine for it unless enough run already.
func (q *writeQueue) add(job func()) {
	q.mu.Lock()
	if q.head > 0 && len(q.jobs) == cap(q.jobs) { // reuse the space of the jobs taken
		n := copy(q.jobs, q.jobs[q.head:])
		clear(q.jobs[n:])
		q.jobs, q.head = q.jobs[:n], 0
	}
	q.jobs = append(q.jobs, job)
	start := q.running < q.max
	if start {
		q.running++
	}
	q.mu.Unlock()
	if start {
		go q.work()
	}
}

// work runs jobs, in the order they came, until there are none.
func (q *writeQueue) work() {
	for {
		q.mu.Lock()
		if q.head == len(q.jobs) {
			if cap(q.jobs) > 64*1024 { // after a burst: do not keep its array
				q.jobs = nil
			}
			q.jobs, q.head = q.jobs[:0], 0
			q.running--
			q.mu.Unlock()
			return
		}
		job := q.jobs[q.head]
		q.jobs[q.head] = nil
		q.head++
		q.mu.Unlock()
		job()
	}
}
