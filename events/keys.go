package events

import "strconv"

// keys builds every Redis key of the package from one prefix and the shard count.
//
// Everything about one user lives in its shard's slot, under the shard's hash tag
// {<prefix>:ev:<shard>}: the shard's event stream, the user's presence hash, and the
// per-node user sets that NodeGone walks. So a presence change and the event it causes are
// one atomic script on Redis Cluster too, and the S shards land on S different slots.
type keys struct {
	prefix string
	shards int
	tags   []string // tags[s] is "{<prefix>:ev:<s>}", built once
}

func newKeys(prefix string, shards int) keys {
	k := keys{prefix: prefix, shards: shards, tags: make([]string, shards)}
	for s := range k.tags {
		k.tags[s] = "{" + prefix + ":ev:" + strconv.Itoa(s) + "}"
	}
	return k
}

// fnv32a is FNV-1a, inlined because hash/fnv allocates on every call of the hot path. It is
// the hash subscriptions uses for its 128 buckets, so with S dividing 128 a user's shard is
// its bucket mod S.
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// shard is the shard of a user's events: one user, one stream, so its events stay in order.
func (k keys) shard(user string) int { return int(fnv32a(user) % uint32(k.shards)) }

// stream is a shard's event stream, read by the consumer group.
func (k keys) stream(s int) string { return k.tags[s] + ":events" }

// bytes is what a shard's queued entries cost, in bytes (see lib.lua).
func (k keys) bytes(s int) string { return k.tags[s] + ":bytes" }

// userBytes is a hash of what each user's queued entries in a shard cost, in bytes.
func (k keys) userBytes(s int) string { return k.tags[s] + ":bytes:users" }

// queue is the keys every queuing script starts with: the stream and its byte counters.
func (k keys) queue(s int) []string { return []string{k.stream(s), k.bytes(s), k.userBytes(s)} }

// owner is the lease naming the sender instance that delivers a shard's stream.
func (k keys) owner(s int) string { return k.tags[s] + ":owner" }

// presence is a user's connections: field "<node>/<conn>", value the connect time (unix ms).
func (k keys) presence(s int, user string) string { return k.tags[s] + ":presence:" + user }

// nodeUsers is the set of a shard's users with at least one connection on node.
func (k keys) nodeUsers(s int, node string) string { return k.tags[s] + ":node:" + node }

// nodes is the set of nodes holding at least one connection of a shard's users.
func (k keys) nodes(s int) string { return k.tags[s] + ":nodes" }

// senders is the sorted set of running senders (score: last heartbeat, unix ms), from which
// each one computes its fair share of shards.
func (k keys) senders() string { return "{" + k.prefix + ":webhook}:senders" }

// group is the consumer group every shard stream is read with.
func (k keys) group() string { return k.prefix + ":webhook" }
