package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// revokedKey holds the moment before which user's tokens are refused, in Unix ms. It sits
// in the user's bucket like the user's other keys.
func (k keys) revokedKey(user string) string { return k.bucket(user) + ":revoked:" + user }

// RevokeTokens records that user's tokens issued before at are refused from now on, on
// every node, for ttl: past it no such token can be valid any more (the service caps a
// token's lifetime), so the record expires by itself. A later revocation replaces an
// earlier one.
func (h *Hub) RevokeTokens(ctx context.Context, user string, at time.Time, ttl time.Duration) error {
	if !ValidID(user) {
		return ErrInvalidID
	}
	err := h.rdb.Set(ctx, h.keys.revokedKey(user), at.UnixMilli(), ttl).Err()
	if err != nil {
		return fmt.Errorf("%w: revoke tokens: %w", ErrUnavailable, err)
	}
	return nil
}

// TokensRevokedBefore returns the moment before which user's tokens are refused, and false
// when no revocation stands. It costs one Redis round trip; an error wraps ErrUnavailable,
// and the caller must then refuse the token (fail closed).
func (h *Hub) TokensRevokedBefore(ctx context.Context, user string) (time.Time, bool, error) {
	v, err := h.rdb.Get(ctx, h.keys.revokedKey(user)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: read token revocation: %w", ErrUnavailable, err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		// Not ours to guess at: refuse as if everything were revoked.
		return time.UnixMilli(1<<62 - 1), true, nil
	}
	return time.UnixMilli(ms), true, nil
}
