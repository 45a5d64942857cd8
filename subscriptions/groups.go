package subscriptions

// groupKey is what deliveries to user are grouped by into one script call: its bucket on
// Redis Cluster, where a call must stay in one slot; anything on a single Redis.
func (h *Hub) groupKey(user string) int {
	if h.cluster {
		return bucketOf(user)
	}
	return 0
}

// groupBy splits items into groups of at most size with the same key, keeping their order
// within a key.
func groupBy[T any](items []T, size int, key func(T) int) [][]T {
	var groups [][]T
	if len(items) > 0 && allSameKey(items, key) {
		// The common case, and always on a single Redis: chunks of items itself, no copies.
		for start := 0; start < len(items); start += size {
			groups = append(groups, items[start:min(start+size, len(items))])
		}
		return groups
	}
	byKey := map[int][]T{}
	var order []int
	for _, it := range items {
		k := key(it)
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], it)
	}
	for _, k := range order {
		its := byKey[k]
		for start := 0; start < len(its); start += size {
			groups = append(groups, its[start:min(start+size, len(its))])
		}
	}
	return groups
}

// allSameKey reports whether every item of a non-empty list has the same key.
func allSameKey[T any](items []T, key func(T) int) bool {
	k := key(items[0])
	for _, it := range items[1:] {
		if key(it) != k {
			return false
		}
	}
	return true
}
