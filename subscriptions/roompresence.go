package subscriptions

import (
	"context"
	"fmt"
	"sort"
)

// RoomPresence returns the members of room with a connection open on any node, sorted. A
// member is online while its channel has a subscriber, which a node holds exactly while it
// holds one of the member's connections (the test GET /v1/users/{user}/presence makes).
// The member set is read once and the subscriber counts asked in batches: on a single
// Redis one NUMSUB per 500 members, pipelined; on Redis Cluster one pipeline per master.
// With asker set, a room asker is not a member of fails with ErrNotMember.
func (h *Hub) RoomPresence(ctx context.Context, room, asker string) ([]string, error) {
	if !ValidID(room) || (asker != "" && !ValidID(asker)) {
		return nil, ErrInvalidID
	}
	members, err := h.rdb.SMembers(ctx, h.keys.roomMembers(room)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: read members of %s: %w", ErrUnavailable, room, err)
	}
	if asker != "" && !contains(members, asker) {
		return nil, ErrNotMember
	}
	channels := make([]string, len(members))
	for i, u := range members {
		channels[i] = h.keys.userChannel(u)
	}
	counts, err := h.subscriberCounts(ctx, channels)
	if err != nil {
		return nil, err
	}
	online := make([]string, 0, len(members))
	for i, u := range members {
		if counts[channels[i]] > 0 {
			online = append(online, u)
		}
	}
	sort.Strings(online)
	return online, nil
}
