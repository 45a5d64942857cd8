package subscriptions

import (
	"strconv"
)

// Buckets is the number of hash-slot buckets user keys are spread over. A user's stream and
// channel carry the same {bucket} hash tag so that the append+publish script touches one
// Redis Cluster slot, and a node needs one sharded subscriber per bucket in use, not per user.
// It is part of the key layout: changing it orphans existing streams.
const Buckets = 128

// keys builds every Redis key and channel name from one prefix, so that several deployments
// (or tests) can share a Redis without seeing each other.
type keys struct {
	prefix string
}

// bucketOf returns the bucket of a user's keys: FNV-1a of the id, mod Buckets. (Written out
// rather than with hash/fnv, which allocates on this per-message path.)
func bucketOf(user string) int {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return int(h % Buckets)
}

// bucketTag is the hash tag of the keys in bucket b.
func (k keys) bucketTag(b int) string { return "{" + k.prefix + ":" + strconv.Itoa(b) + "}" }

// bucket returns the hash tag of a user's keys.
func (k keys) bucket(user string) string { return k.bucketTag(bucketOf(user)) }

// userStream is the stream that keeps a user's recent messages for resume.
func (k keys) userStream(user string) string { return k.bucket(user) + ":stream:" + user }

// userChannel is the Pub/Sub channel a user's messages are published on.
func (k keys) userChannel(user string) string { return k.bucket(user) + ":user:" + user }

// userFromChannel returns the user a channel name belongs to, or false for a channel
// that is not a user channel of this prefix.
func (k keys) userFromChannel(ch string) (string, bool) {
	// Layout: "{" prefix ":" bucket "}:user:" user
	p := len(k.prefix) + 2
	if len(ch) <= p || ch[0] != '{' || ch[1:p-1] != k.prefix || ch[p-1] != ':' {
		return "", false
	}
	rest := ch[p:]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '}' {
			const tag = "}:user:"
			if len(rest) > i+len(tag) && rest[i:i+len(tag)] == tag {
				return rest[i+len(tag):], true
			}
			return "", false
		}
	}
	return "", false
}

// nodeChannel is the node's own channel on a Pub/Sub connection: subscribed first on every
// new connection, its confirmation says the connection is up. On Redis Cluster each
// bucket's sharded connection has its own, in the bucket's slot (bucket >= 0).
func (k keys) nodeChannel(node string, bucket int) string {
	if bucket < 0 {
		return k.prefix + ":node:" + node
	}
	return k.bucketTag(bucket) + ":node:" + node
}

// ChannelName returns the Redis channel of user under prefix, for operators and tests that
// look at Redis directly (PUBSUB NUMSUB).
func ChannelName(prefix, user string) string { return keys{prefix: prefix}.userChannel(user) }

// roomTag is the hash tag of a room's keys: its member set and its fan-out lock share a
// slot of their own, apart from the members' user keys.
func (k keys) roomTag(room string) string { return "{" + k.prefix + ":room:" + room + "}" }

// roomMembers is the set of user ids in a room.
func (k keys) roomMembers(room string) string { return k.roomTag(room) + ":members" }

// roomHistory is the stream that keeps a room's recent messages, once each, in the room's
// slot.
func (k keys) roomHistory(room string) string { return k.roomTag(room) + ":history" }

// roomMode says whether a room is big (hash field big = "1"), and where in its stream it
// last turned big (from) or small (until).
func (k keys) roomMode(room string) string { return k.roomTag(room) + ":mode" }

// roomChannel is the Pub/Sub channel a big room's messages are published on, in the room's
// slot.
func (k keys) roomChannel(room string) string { return k.roomTag(room) + ":channel" }

// roomLock serializes a room's fan-outs across nodes, so that every member sees the room's
// messages in the same relative order.
func (k keys) roomLock(room string) string { return k.roomTag(room) + ":lock" }

// userRooms is the set of rooms a user is in; it lives in the user's bucket.
func (k keys) userRooms(user string) string { return k.bucket(user) + ":rooms:" + user }

// nodes is the registry: a sorted set of node ids scored by when their entry expires.
func (k keys) nodes() string { return "{" + k.prefix + ":nodes}" }

// nodeInfo holds a node's announced info, with a TTL, in the registry's slot.
func (k keys) nodeInfo(node string) string { return k.nodes() + ":info:" + node }
