package hooks

import (
	"strings"
	"time"
)

// cache holds authorize answers until they expire, at most max of them: a map for lookups
// and a list in the order answers were stored, oldest first, for eviction. Map and list
// hold the same answers, so the bound on one is the bound on both. Not safe for concurrent
// use: the Client's mutex guards it.
type cache struct {
	max     int
	entries map[AuthorizeRequest]*cacheEntry
	root    cacheEntry // root.next is the oldest answer, root.prev the newest
}

type cacheEntry struct {
	key        AuthorizeRequest
	allow      bool
	expires    time.Time
	prev, next *cacheEntry
}

func newCache(max int) *cache {
	c := &cache{max: max, entries: make(map[AuthorizeRequest]*cacheEntry)}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

// get returns the answer cached for req, if there is one still valid at now.
func (c *cache) get(req AuthorizeRequest, now time.Time) (allow, ok bool) {
	e, ok := c.entries[req]
	if !ok {
		return false, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return false, false
	}
	return e.allow, true
}

// put caches allow for req until expires, as the newest answer. It first drops the
// expired answers among the oldest, then, if the cache is full, the oldest.
func (c *cache) put(req AuthorizeRequest, allow bool, expires, now time.Time) {
	if e, ok := c.entries[req]; ok {
		e.allow, e.expires = allow, expires
		c.unlink(e)
		c.pushNewest(e)
		return
	}
	for e := c.root.next; e != &c.root && !now.Before(e.expires); e = c.root.next {
		c.remove(e)
	}
	if len(c.entries) >= c.max {
		c.remove(c.root.next)
	}
	// The key outlives the request: its strings must not pin a larger buffer they were
	// sliced from (a frame, say).
	req = AuthorizeRequest{
		Action: strings.Clone(req.Action), User: strings.Clone(req.User),
		Room: strings.Clone(req.Room), To: strings.Clone(req.To),
	}
	e := &cacheEntry{key: req, allow: allow, expires: expires}
	c.entries[req] = e
	c.pushNewest(e)
}

func (c *cache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.key)
}

func (c *cache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushNewest(e *cacheEntry) {
	e.prev, e.next = c.root.prev, &c.root
	c.root.prev.next = e
	c.root.prev = e
}

// len is the number of answers held, valid or not yet found expired.
func (c *cache) len() int { return len(c.entries) }
