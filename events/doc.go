// Package events delivers backend events (user.online, user.offline, room.joined,
// room.left, client.event) to the webhook described in docs/protocol.md, "Backend events":
// durably queued in Redis before anything is acknowledged, sent at least once in signed
// batches, in order per user, by whichever nodes are alive.
//
// # Use
//
//	q, err := events.New(rdb, events.Config{URL: url, Secret: secret, Node: node, Logger: log})
//	go q.Run(ctx)                        // every node; returns when ctx ends
//	err = q.Emit(ctx, events.Event{Type: events.ClientEvent, User: u, Name: n, Data: d})
//	p := q.Presence()
//	err = p.Connected(ctx, user, node, connID)    // user.online on the first connection anywhere
//	err = p.Disconnected(ctx, user, node, connID) // user.offline on the last one
//	n, err := p.Online(ctx, user)                 // connections anywhere
//	_, err = p.NodeGone(ctx, deadNode)            // a crashed node's users go offline
//
// Emit and the presence calls return once Redis holds the change: that is when a client's
// ack may be sent. They never wait for the webhook. Errors wrap ErrUnavailable (Redis did
// not answer: 503 or an error frame), ErrInvalidEvent (bad input: 400) or, for Emit,
// ErrQueueFull (the event does not fit in the byte budget: see below).
//
// # Queue
//
// Events are spread over Config.Shards Redis streams by fnv32a(user), each stream under
// its own hash tag {<prefix>:ev:<shard>} so that on Redis Cluster they live on different
// slots. A user's events all go to one stream, in order. Delivered events are acknowledged
// and deleted (XACK+XDEL), so the streams hold only what is undelivered.
//
// # Byte budget
//
// The queue is bounded in bytes, not entries, and refuses rather than trims: an event that
// does not fit is not queued (Emit returns ErrQueueFull, Stats counts it by reason), and
// nothing already queued is ever dropped to make room, so one user's flood cannot evict
// another user's events. Each shard has MaxBytes/Shards. Each entry is charged about what it
// takes of Redis's memory (lib.lua: its JSON and user id, 128 bytes of bookkeeping, and above
// 4 KB the allocator's rounding). Three limits apply:
//
//   - a client.event is refused when its user's queued bytes in the shard would pass
//     MaxUserBytes (reason user_share);
//   - a client.event is refused when the shard would pass (1-SystemReserve) of its budget
//     (reason queue_bytes): the rest is reserved for the server's own events, so however
//     many users flood, user.online, user.offline, room.joined and room.left still fit;
//   - a server event is refused only when the shard's whole budget is used (queue_bytes).
//     Presence changes then stand without their event; Emit of a room event returns
//     ErrQueueFull after the membership changed, as it returns ErrUnavailable.
//
// The shard's byte counter and its per-user hash live in the shard's slot. The script that
// checks the limits also appends the entry and charges the counters (emit in lib.lua), so
// there is no read-then-write race between nodes. Each entry records its user and charge;
// the script that acknowledges entries (ack.lua) releases a charge only when its XDEL deleted
// the entry, so retries, a node that crashed mid-send and a late ack after another node
// claimed the events never release twice. The counters are reset whenever the stream is
// empty (which heals drift from outside, such as a key edited by hand) and expire after
// 2*MaxAge without an append, with an abandoned queue.
//
// # Sender
//
// Each shard is sent by one node at a time, the holder of its lease (a key with a TTL of
// ClaimIdle, renewed by its holder); senders share the shards evenly. The holder reads
// with XREADGROUP (consumer group <prefix>:webhook, consumer = node id), POSTs batches of
// up to 100 events, and retries a failed batch with exponential backoff and jitter before
// sending anything newer of that shard, so a user's events reach the webhook in order: a
// user.offline never overtakes its user.online. Events older than MaxAge are dropped and
// counted. When a node dies its leases expire; the next holder first claims (XAUTOCLAIM)
// everything pending on the shard, oldest first. A periodic XAUTOCLAIM of entries idle for
// ClaimIdle catches what a node read after losing its lease. Durability is Redis's own:
// an event survives any node, and survives Redis as far as its persistence and replication
// are configured to.
//
// # Presence
//
// A user's connections are a hash {<prefix>:ev:<shard>}:presence:<user>, field
// "<node>/<conn>", in the same slot as the user's event stream, so each change and the
// user.online or user.offline it causes are one atomic script, also on Redis Cluster. Per
// shard, a set of each node's users and a set of nodes let NodeGone find and clear a dead
// node's connections with single-slot scripts that are safe to repeat.
package events
