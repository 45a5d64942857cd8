package subscriptions

import (
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
