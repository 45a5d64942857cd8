package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// maxAnswerBytes bounds the answer body a poster reads; the API's answers are tiny.
const maxAnswerBytes = 1 << 20

// poster is one publisher's HTTP/1.1 keep-alive connection to one node, used by one
// goroutine. It writes each request with one write and reads the answer on the same
// goroutine. net/http's client costs two goroutine hand-offs and a few dozen allocations
// per request; on a machine shared with the server that is CPU taken from what is being
// measured. The profile of a dm run showed the net/http client as half the tool's CPU.
//
// A request is never retried: a POST that may have reached the server and is sent again
// would be a duplicate the tool itself caused.
//
// The hot loop stays off the client package (client/), which the setup calls use: sending
// through it (net/http underneath) cut the dm scenario's accepted/s by 24-38% here (2
// rounds each, 16 publishers, on a busy 2-core machine: 3454 and 5134/s by hand against
// 2125 and 3898/s through the client).
type poster struct {
	addr    string      // host:port to dial
	host    string      // Host header
	prefix  string      // path prefix of the base URL ("" or "/base")
	tls     *tls.Config // nil for http
	auth    string      // "Authorization: Bearer <key>\r\n", or ""
	timeout time.Duration
	// keyPrefix, when set, makes every request carry "Idempotency-Key: <keyPrefix><n>",
	// n counting this poster's requests: unique per run (the prefix names the run and the
	// publisher), as a client's key is unique per logical send.
	keyPrefix string
	keys      int64

	conn   net.Conn
	br     *bufio.Reader
	req    []byte // the request being written, reused
	answer []byte // the last answer body, reused
}

// newPoster prepares a poster for base (http(s)://host[:port][/prefix]); it dials on first use.
func newPoster(base, apiKey string, timeout time.Duration) (*poster, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	p := &poster{host: u.Host, prefix: u.EscapedPath(), timeout: timeout, addr: u.Host}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		p.addr = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		p.tls = &tls.Config{ServerName: u.Hostname()}
	}
	if apiKey != "" {
		p.auth = "Authorization: Bearer " + apiKey + "\r\n"
	}
	return p, nil
}

// post sends body as JSON to path and returns the status and the answer body, which is
// valid until the next call. An error means no answer was read: the request may or may not
// have been accepted.
func (p *poster) post(path string, body []byte) (int, []byte, error) {
	if p.conn == nil {
		if err := p.dial(); err != nil {
			return 0, nil, err
		}
	}
	status, keep, err := p.roundTrip(path, body)
	if err != nil || !keep {
		p.close()
	}
	return status, p.answer, err
}

func (p *poster) dial() error {
	conn, err := net.DialTimeout("tcp", p.addr, p.timeout)
	if err != nil {
		return err
	}
	if p.tls != nil {
		tc := tls.Client(conn, p.tls)
		_ = tc.SetDeadline(time.Now().Add(p.timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	p.conn = conn
	if p.br == nil {
		p.br = bufio.NewReaderSize(conn, 4096)
	} else {
		p.br.Reset(conn)
	}
	return nil
}

// close drops the connection; the next post dials again.
func (p *poster) close() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

// roundTrip writes one request and reads its answer, reporting whether the connection can
// carry another.
func (p *poster) roundTrip(path string, body []byte) (status int, keep bool, err error) {
	b := p.req[:0]
	b = append(b, "POST "...)
	b = append(b, p.prefix...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nUser-Agent: switchboard-load\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	b = append(b, p.auth...)
	if p.keyPrefix != "" {
		p.keys++
		b = append(b, "Idempotency-Key: "...)
		b = append(b, p.keyPrefix...)
		b = strconv.AppendInt(b, p.keys, 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	p.req = b

	if err := p.conn.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return 0, false, err
	}
	if _, err := p.conn.Write(b); err != nil {
		return 0, false, err
	}
	return p.readAnswer()
}

// errMalformed is an answer that is not HTTP/1.x.
var errMalformed = errors.New("malformed HTTP answer")

// readAnswer reads a status line, headers and body from p.br into p.answer.
func (p *poster) readAnswer() (status int, keep bool, err error) {
	line, err := p.line()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 202 Accepted"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keep = line[7] == '1'
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	length, chunked := int64(-1), false
	for {
		line, err := p.line()
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case asciiEqualFold(name, "connection"):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if status == http.StatusNoContent || status == http.StatusNotModified || status/100 == 1 {
		length, chunked = 0, false // no body, whatever the headers say
	}
	p.answer = p.answer[:0]
	switch {
	case chunked:
		if p.answer, err = appendAll(p.answer, httputil.NewChunkedReader(p.br)); err == nil {
			err = p.skipTrailer()
		}
	case length > maxAnswerBytes:
		return status, false, fmt.Errorf("answer of %d bytes is too large", length)
	case length >= 0:
		p.answer = append(p.answer, make([]byte, length)...)
		_, err = io.ReadFull(p.br, p.answer)
	default: // the body ends with the connection
		p.answer, err = appendAll(p.answer, p.br)
		keep = false
	}
	return status, keep && err == nil, err
}

// skipTrailer reads the trailer of a chunked body, up to and including its empty line.
func (p *poster) skipTrailer() error {
	for {
		line, err := p.line()
		if err != nil || len(line) == 0 {
			return err
		}
	}
}

// line reads one header line without its CRLF; the slice is valid until the next read.
func (p *poster) line() ([]byte, error) {
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: header line longer than %d bytes", errMalformed, p.br.Size())
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// appendAll appends what r yields, up to maxAnswerBytes, to b.
func appendAll(b []byte, r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(b)
	_, err := buf.ReadFrom(io.LimitReader(r, maxAnswerBytes))
	return buf.Bytes(), err
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// posterPool gives each publisher its own poster, publisher i on node i.
type posterPool []*poster

func newPosterPool(cfg config) (posterPool, error) {
	pool := make(posterPool, cfg.publishers)
	for i := range pool {
		p, err := newPoster(cfg.urls[i%len(cfg.urls)], cfg.apiKey, cfg.httpTimeout)
		if err != nil {
			return nil, err
		}
		if cfg.idemKeys {
			p.keyPrefix = cfg.userPrefix + "." + strconv.Itoa(i) + "."
		}
		pool[i] = p
	}
	return pool, nil
}

// close drops every connection; call it once the publishers have stopped.
func (pool posterPool) close() {
	for _, p := range pool {
		p.close()
	}
}
