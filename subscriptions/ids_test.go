package subscriptions

import (
	"fmt"
	"hash/fnv"
	"testing"
)

func TestBucketOfIsFNV1aModBuckets(t *testing.T) {
	for _, u := range []string{"a", "bob", "alice@example.com", "user-123", "Z.9_+@"} {
		h := fnv.New32a()
		h.Write([]byte(u))
		if got, want := bucketOf(u), int(h.Sum32()%Buckets); got != want {
			t.Fatalf("bucketOf(%q) = %d, want %d", u, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"bob": true, "a.b_c@d+e-f": true, "A9": true, "": false, "a b": false, "a:b": false,
		"{a}": false, "é": false, string(make([]byte, 129)): false,
	} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, !want, want)
		}
	}
	long := make([]byte, 128)
	for i := range long {
		long[i] = 'x'
	}
	if !ValidID(string(long)) {
		t.Error("a 128-character id is valid")
	}
}

func TestGroupByKeepsOrderWithinKeysAndBoundsGroups(t *testing.T) {
	same := groupBy([]int{1, 2, 3, 4, 5}, 2, func(int) int { return 0 })
	if fmt.Sprint(same) != "[[1 2] [3 4] [5]]" {
		t.Fatalf("one key: %v", same)
	}
	mixed := groupBy([]int{1, 2, 3, 4, 5, 6, 7}, 2, func(i int) int { return i % 2 })
	if fmt.Sprint(mixed) != "[[1 3] [5 7] [2 4] [6]]" {
		t.Fatalf("two keys: %v", mixed)
	}
	if len(groupBy([]int{}, 2, func(int) int { return 0 })) != 0 {
		t.Fatal("no items, no groups")
	}
}
