package wsclient

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// sendServer is a WebSocket server that sends each connection n message frames, ids 1-1 to
// 1-n, the first `first` at once and the rest when release is closed, then closes.
func sendServer(t *testing.T, n, first int, release <-chan struct{}) string {
	t.Helper()
	up := gws.NewUpgrader(&gws.BuiltinEventHandler{}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		go conn.ReadLoop()
		go func() {
			for i := 1; i <= n; i++ {
				if i == first+1 {
					<-release
				}
				msg := `{"type":"message","id":"1-` + strconv.Itoa(i) + `","data":{"t":1,"s":` + strconv.Itoa(i) + `}}`
				if conn.WriteString(msg) != nil {
					return
				}
			}
			_ = conn.WriteClose(1000, nil)
		}()
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestHandleTakesEveryFrameInOrder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fast, borrow bool
	}{{"Handle", false, false}, {"Handle, FastMessages", true, false}, {"HandleBorrowed", false, true}, {"HandleBorrowed, FastMessages", true, true}} {
		fast := tc.fast
		t.Run(tc.name, func(t *testing.T) {
			const n, first = 2000, 50
			release := make(chan struct{})
			url := sendServer(t, n, first, release)
			// A buffer smaller than what arrives before Handle: the read loop blocks on it.
			c, err := Dial(url, Options{Buffer: 8, FastMessages: fast})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Abort)
			// One frame read with Next, then the rest handed over.
			f, err := c.NextWithin(5 * time.Second)
			if err != nil || f.ID != "1-1" {
				t.Fatalf("first frame %+v, %v", f, err)
			}
			var mu sync.Mutex
			var ids []string
			var kept []Frame // whole frames kept by Handle; borrowed ones only checked
			fn := func(f Frame) {
				mu.Lock()
				defer mu.Unlock()
				// The id read from the payload too: a borrowed frame is whole during fn.
				if want := `{"t":1,"s":` + strings.TrimPrefix(f.ID, "1-") + `}`; string(f.Data) != want {
					t.Errorf("frame %s has data %s", f.ID, f.Data)
				}
				ids = append(ids, strings.Clone(f.ID))
				if !tc.borrow {
					kept = append(kept, f)
				}
			}
			if tc.borrow {
				c.HandleBorrowed(fn)
			} else {
				c.Handle(fn)
			}
			close(release)
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the connection did not end")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ids) != n-1 {
				t.Fatalf("handled %d frames, want %d", len(ids), n-1)
			}
			for i, id := range ids {
				if want := "1-" + strconv.Itoa(i+2); id != want {
					t.Fatalf("frame %d is %s, want %s", i, id, want)
				}
			}
			for i, f := range kept { // Handle's frames are the handler's to keep
				if want := "1-" + strconv.Itoa(i+2); f.ID != want || !strings.Contains(string(f.Raw), want) {
					t.Fatalf("kept frame %d is %s (%s), want %s", i, f.ID, f.Raw, want)
				}
			}
		})
	}
}

func TestHandleNilStopsIt(t *testing.T) {
	const n, first = 100, 10
	release := make(chan struct{})
	url := sendServer(t, n, first, release)
	c, err := Dial(url, Options{Buffer: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Abort)
	got := 0
	c.Handle(func(Frame) { got++ })
	c.Handle(nil)
	handled := got // Handle(nil) returned: fn never runs again
	close(release)
	read := 0
	for {
		if _, err := c.NextWithin(5 * time.Second); err != nil {
			break
		}
		read++
	}
	if handled+read != n || got != handled {
		t.Fatalf("handled %d (%d after Handle(nil)) and read %d, want %d in all", handled, got-handled, read, n)
	}
}
