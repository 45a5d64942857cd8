package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// RoomQuery selects a page of a room's history. Since and Before are ids of the room's
// history (a RoomPage's or RoomSent.HistoryID); give at most one of them.
type RoomQuery struct {
	// Since: the messages after this id. Empty, with Before empty too: from the oldest kept.
	Since string
	// Before: the newest messages before this id; page back with the first id of a page.
	Before string
	// Limit: at most this many (0: the server's default, 100; at most MaxMessagesLimit).
	Limit int
}

// RoomPage is a page of a room's history, oldest first.
type RoomPage struct {
	Messages []Message `json:"messages"`
	// More says messages may remain beyond the page: after its last one (Since, or
	// neither), or before its first (Before).
	More bool `json:"more"`
}

// RoomMessages reads a page of room's history, the room's own copy of every stored room
// message (GET /v1/rooms/{room}/messages). An unknown room, or one whose server keeps no
// history, has none. Since and Before together are refused (400 bad_request).
func (c *Client) RoomMessages(ctx context.Context, room string, q RoomQuery) (RoomPage, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Before != "" {
		v.Set("before", q.Before)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var page RoomPage
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/rooms/" + seg(room) + "/messages", query: v, idempotent: true}, &page)
	return page, err
}

// RoomPresence lists room's members that have a connection open on any node, sorted (GET
// /v1/rooms/{room}/presence).
func (c *Client) RoomPresence(ctx context.Context, room string) ([]string, error) {
	var answer struct {
		Online []string `json:"online"`
	}
	err := c.json(ctx, call{method: http.MethodGet, path: "/v1/rooms/" + seg(room) + "/presence", idempotent: true}, &answer)
	return answer.Online, err
}
