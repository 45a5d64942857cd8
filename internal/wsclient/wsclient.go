// Package wsclient is a small Switchboard WebSocket client for tests and the load tool. It
// decodes server frames and can reconnect and resume from the last message id it saw, as
// a real client must, to prove the server's delivery guarantees end to end.
package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Frame is any server frame, decoded.
type Frame struct {
	Type       string          `json:"type"`
	ID         string          `json:"id,omitempty"`
	From       string          `json:"from,omitempty"`
	To         string          `json:"to,omitempty"`
	Room       string          `json:"room,omitempty"`
	Ref        string          `json:"ref,omitempty"`
	Code       string          `json:"code,omitempty"`
	Message    string          `json:"message,omitempty"`
	User       string          `json:"user,omitempty"`
	Node       string          `json:"node,omitempty"`
	Recovered  *bool           `json:"recovered,omitempty"`
	LastID     string          `json:"last_id,omitempty"`
	Recipients *int            `json:"recipients,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataB64    string          `json:"data_b64,omitempty"`
	Rooms      []string        `json:"rooms,omitempty"`
	In         *int            `json:"in,omitempty"`
	CopyID     string          `json:"copy_id,omitempty"`
	HistoryID  string          `json:"history_id,omitempty"`
	Dedupe     string          `json:"dedupe,omitempty"`
	Copy       *bool           `json:"copy,omitempty"`
	Ephemeral  bool            `json:"ephemeral,omitempty"`
	Messages   []Frame         `json:"messages,omitempty"`
	More       bool            `json:"more,omitempty"`
	Online     []string        `json:"online,omitempty"`
	// Big marks a big room's message: its id is a position in the room's stream, resumed
	// with room_since, not since.
	Big bool `json:"big,omitempty"`
	// BigRooms, on a welcome, are the user's big rooms and where each starts.
	BigRooms []BigRoom `json:"big_rooms,omitempty"`
	Raw      []byte    `json:"-"`
}

// BigRoom is one of a welcome's big rooms.
type BigRoom struct {
	Room      string `json:"room"`
	LastID    string `json:"last_id"`
	Recovered *bool  `json:"recovered,omitempty"`
}

// Conn is one WebSocket connection. Frames arrive in order on Frames; Done closes when the
// connection has ended, and CloseCode tells how.
type Conn struct {
	conn   *gws.Conn
	frames chan Frame
	done   chan struct{}
	quit   chan struct{} // closed by Close and Abort: unblocks a reader waiting on frames
	once   sync.Once

	mu        sync.Mutex
	closeCode uint16
	closeErr  error

	// Handle's state: fn takes the frames, under hmu, once handling is set; borrowing is
	// handling with HandleBorrowed.
	hmu       sync.Mutex
	fn        func(Frame)
	borrow    bool
	handling  atomic.Bool
	borrowing atomic.Bool
	handled   chan struct{} // closed by the first Handle: wakes a read loop blocked on frames
	hOnce     sync.Once
}

// Options configures Dial.
type Options struct {
	// Header is sent with the upgrade request (Origin, Authorization).
	Header http.Header
	// Buffer is how many frames may wait unread before the reader blocks (and so stops
	// reading the socket, as a stalled client would). Default 8192: a channel of 424-byte frames, so
	// 3.5 MB a connection once the ring has gone round (100000 made a test of 105 connections
	// hold 4.5 GB, and the suite ran out of memory).
	Buffer int
	// Compression offers permessage-deflate; a server with it on sends large messages
	// compressed (and gws's client sends compressed ones too).
	Compression bool
	// ReadBytes, when set, is added every byte read from the socket: what crossed the wire,
	// after compression, headers included — for the load tool's bandwidth figure.
	ReadBytes *atomic.Int64
	// FastMessages decodes frames holding only a message's fields with a scanner instead of
	// json.Unmarshal, to the same Frame, falling back to json.Unmarshal for anything else.
	// The frame's strings and Data then share Raw's memory: Raw must not be modified. For
	// the load tool, whose receive path is its bottleneck.
	FastMessages bool
}

// countingDialer dials TCP connections that add the bytes they read to n.
type countingDialer struct {
	d net.Dialer
	n *atomic.Int64
}

func (c countingDialer) Dial(network, addr string) (net.Conn, error) {
	conn, err := c.d.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: c.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ErrRefused is returned by Dial when the server answered the upgrade with an HTTP error.
type ErrRefused struct {
	Status int
	Body   string
}

func (e *ErrRefused) Error() string { return fmt.Sprintf("refused with %d: %s", e.Status, e.Body) }

// Dial opens a WebSocket to url (ws://host/ws?...).
func Dial(url string, opts Options) (*Conn, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	c := &Conn{frames: make(chan Frame, opts.Buffer), done: make(chan struct{}), quit: make(chan struct{}), handled: make(chan struct{})}
	co := &gws.ClientOption{
		Addr:               url,
		RequestHeader:      opts.Header,
		ReadMaxPayloadSize: 32 << 20,
		HandshakeTimeout:   10 * time.Second,
		PermessageDeflate:  gws.PermessageDeflate{Enabled: opts.Compression},
	}
	if opts.ReadBytes != nil {
		co.NewDialer = func() (gws.Dialer, error) {
			return countingDialer{d: net.Dialer{Timeout: 10 * time.Second}, n: opts.ReadBytes}, nil
		}
	}
	conn, resp, err := gws.NewClient(&handler{c: c, fast: opts.FastMessages}, co)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body [512]byte
			n, _ := resp.Body.Read(body[:])
			_ = resp.Body.Close()
			return nil, &ErrRefused{Status: resp.StatusCode, Body: string(body[:n])}
		}
		return nil, err
	}
	c.conn = conn
	go conn.ReadLoop()
	return c, nil
}

// Send writes v as a JSON text frame.
func (c *Conn) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw writes b as a text frame as it is.
func (c *Conn) SendRaw(b []byte) error {
	return c.conn.WriteMessage(gws.OpcodeText, b)
}

// SendBinary writes b as a binary frame.
func (c *Conn) SendBinary(b []byte) error {
	return c.conn.WriteMessage(gws.OpcodeBinary, b)
}

// ErrClosed is returned by Next once the connection has ended and every frame was read.
var ErrClosed = errors.New("connection closed")

// Next returns the next frame, waiting until ctx ends.
func (c *Conn) Next(ctx context.Context) (Frame, error) {
	select {
	case f := <-c.frames:
		return f, nil
	default:
	}
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames:
			return f, nil
		default:
			return Frame{}, ErrClosed
		}
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// NextWithin is Next with a timeout.
func (c *Conn) NextWithin(d time.Duration) (Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Next(ctx)
}

// Handle hands every frame not yet read with Next to fn, in order: first those waiting,
// on the caller's goroutine, then each as it arrives, on the connection's read goroutine,
// which saves a goroutine switch per frame. Calls of fn never overlap, and once Done is
// closed every frame has been handed to it. Handle(nil) stops it: when it returns, fn is
// not running and never runs again, and frames wait for Next again (those arriving after
// Close or Abort may be dropped, as ever). Next must not be called while fn is set.
func (c *Conn) Handle(fn func(Frame)) { c.handle(fn, false) }

// HandleBorrowed is Handle without the copy of each frame: one that arrives while fn is set
// is decoded from gws's read buffer, which gws reuses once fn returns, so its strings, Data
// and Raw are valid only during the call; fn copies what it keeps (strings.Clone). Frames
// that had waited for Next are copies, as ever.
func (c *Conn) HandleBorrowed(fn func(Frame)) { c.handle(fn, true) }

func (c *Conn) handle(fn func(Frame), borrow bool) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	c.fn, c.borrow = fn, borrow && fn != nil
	c.handling.Store(fn != nil)
	c.borrowing.Store(c.borrow)
	if fn != nil {
		c.hOnce.Do(func() { close(c.handled) })
		c.drainLocked()
	}
}

// drainLocked hands the waiting frames to fn; hmu is held and fn is set.
func (c *Conn) drainLocked() {
	for {
		select {
		case f := <-c.frames:
			c.fn(f)
		default:
			return
		}
	}
}

// handOver gives f to fn if Handle set one, after the frames waiting before it, and reports
// whether it did.
func (c *Conn) handOver(f Frame) bool {
	if !c.handling.Load() {
		return false
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.fn == nil {
		return false
	}
	c.drainLocked()
	c.fn(f)
	return true
}

// handBorrowed decodes b, which OnMessage's caller reuses, and gives it to fn if
// HandleBorrowed set one, after the frames waiting before it; it reports whether it did.
func (c *Conn) handBorrowed(b []byte, fast bool) bool {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.fn == nil || !c.borrow {
		return false
	}
	c.drainLocked()
	c.fn(decode(b, fast))
	return true
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseCode returns the close code the server sent (0 if none, or not closed yet) and the
// error the connection ended with.
func (c *Conn) CloseCode() (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeErr
}

// Close closes the connection with a normal close frame.
func (c *Conn) Close() {
	c.once.Do(func() { close(c.quit) })
	_ = c.conn.WriteClose(1000, nil)
}

// Abort drops the TCP connection without a close frame, as a crashed client would.
func (c *Conn) Abort() {
	c.once.Do(func() { close(c.quit) })
	_ = c.conn.NetConn().Close()
}

type handler struct {
	gws.BuiltinEventHandler
	c    *Conn
	fast bool
	// slab, with fast, holds the copies of small frames, many to an allocation; it belongs
	// to the read loop, the only caller of OnMessage.
	slab []byte
}

// slabSize is the allocation small frames are copied into with FastMessages: one
// allocation per about twenty message frames instead of one each, the tool's main garbage.
const slabSize = 4096

func (h *handler) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	c := h.c
	if c.borrowing.Load() && c.handBorrowed(m.Bytes(), h.fast) {
		return
	}
	// The copy outlives m, whose buffer gws reuses once OnMessage returns.
	raw := h.keep(m.Bytes())
	f := decode(raw, h.fast)
	if c.handOver(f) {
		return
	}
	select {
	case c.frames <- f:
		// A Handle since handOver's check may have drained the frames before f arrived:
		// hand f over now, rather than leave it for a Next that will not come.
		if c.handling.Load() {
			c.hmu.Lock()
			if c.fn != nil {
				c.drainLocked()
			}
			c.hmu.Unlock()
		}
	case <-c.handled:
		if !c.handOver(f) {
			// Handle(nil) came first: back to waiting for Next.
			select {
			case c.frames <- f:
			case <-c.quit:
			}
		}
	case <-c.quit:
	}
}

// keep copies b for the frame. With fast, a small frame is copied into the slab: frames
// then share an allocation (each its own bytes, capacity included), which lives as long as
// any of them.
func (h *handler) keep(b []byte) []byte {
	if !h.fast || len(b) > slabSize/8 {
		return append([]byte(nil), b...)
	}
	if cap(h.slab)-len(h.slab) < len(b) {
		h.slab = make([]byte, 0, slabSize)
	}
	start := len(h.slab)
	h.slab = append(h.slab, b...)
	return h.slab[start:len(h.slab):len(h.slab)]
}

// decode decodes one server frame; an undecodable one is of type "invalid".
func decode(raw []byte, fast bool) Frame {
	if fast {
		var f Frame
		if decodeFast(raw, &f) {
			f.Raw = raw
			return f
		}
	}
	return decodeJSON(raw)
}

func decodeJSON(raw []byte) Frame {
	var f Frame
	if err := json.Unmarshal(raw, &f); err != nil {
		f = Frame{Type: "invalid"}
	}
	f.Raw = raw
	return f
}

func (h *handler) OnClose(_ *gws.Conn, err error) {
	h.c.mu.Lock()
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		h.c.closeCode = ce.Code
	}
	h.c.closeErr = err
	h.c.mu.Unlock()
	close(h.c.done)
}
