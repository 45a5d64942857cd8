package hooks

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRPCOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reply   reply
		data    string // the result; "" for an error
		status  int    // the RPCError's status; 0 for none
		err     error
		outcome string
	}{
		{"a 200 returns its JSON", reply{status: 200, body: `{"order":42,"items":["a"]}`}, `{"order":42,"items":["a"]}`, 0, nil, "ok"},
		{"a 200 with a scalar returns it", reply{status: 200, body: "42\n"}, `42`, 0, nil, "ok"},
		{"a 201 returns its JSON", reply{status: 201, body: `[1,2]`}, `[1,2]`, 0, nil, "ok"},
		{"an empty 200 returns null", reply{status: 200}, `null`, 0, nil, "ok"},
		{"a 204 returns null", reply{status: 204}, `null`, 0, nil, "ok"},
		{"a body at the limit returns it", reply{status: 200, body: padded(`"a":1`, tableBodySize)}, padded(`"a":1`, tableBodySize), 0, nil, "ok"},
		{"a 400 fails with its status", reply{status: 400, body: `{"error":"bad"}`}, "", 400, nil, "4xx"},
		{"a 404 fails with its status", reply{status: 404}, "", 404, nil, "4xx"},
		{"a 500 fails with its status", reply{status: 500, body: `{"ok":true}`}, "", 500, nil, "5xx"},
		{"a redirect is not followed and fails with its status", reply{redirect: true}, "", 302, nil, "3xx"},
		{"a body that is not JSON is unavailable", reply{status: 200, body: `{"order":`}, "", 0, ErrUnavailable, "bad_answer"},
		{"plain text is unavailable", reply{status: 200, body: `ok`}, "", 0, ErrUnavailable, "bad_answer"},
		{"a body over the limit is unavailable", reply{status: 200, body: padded(`"a":1`, tableBodySize+1)}, "", 0, ErrUnavailable, "bad_answer"},
		{"JSON padded over the limit with spaces is unavailable", reply{status: 200, body: "1" + strings.Repeat(" ", tableBodySize)}, "", 0, ErrUnavailable, "bad_answer"},
		{"a timeout is unavailable", reply{hang: true}, "", 0, ErrUnavailable, "timeout"},
		{"an unreachable backend is unavailable", reply{unreachable: true}, "", 0, ErrUnavailable, "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, b := tt.reply.serve(t)
			c, reg := newClient(t, Config{RPCURL: url, Node: "n1", Timeout: tableTimeout, MaxBodyBytes: tableBodySize})
			data, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "orders.get", Data: json.RawMessage(`{"id":7}`)})
			var rpcErr *RPCError
			switch {
			case tt.data != "":
				if err != nil || string(data) != tt.data {
					t.Fatalf("RPC = %s, %v; want %s", data, err, tt.data)
				}
			case tt.status != 0:
				if !errors.As(err, &rpcErr) || rpcErr.Status != tt.status || errors.Is(err, ErrUnavailable) {
					t.Fatalf("RPC = %s, %v; want an RPCError with %d", data, err, tt.status)
				}
			default:
				if !errors.Is(err, tt.err) || errors.As(err, &rpcErr) {
					t.Fatalf("RPC = %s, %v; want %v", data, err, tt.err)
				}
			}
			if err != nil && data != nil {
				t.Errorf("an error came with data %s", data)
			}
			checkOutcome(t, reg, HookRPC, tt.outcome)
			if b != nil {
				if got, want := b.lastBody(t), `{"user":"alice","method":"orders.get","data":{"id":7},"node":"n1"}`; got != want {
					t.Errorf("the backend got %s, want %s", got, want)
				}
			}
		})
	}
}

func TestRPCSendsNullWithoutData(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `true`))
	c, _ := newClient(t, Config{RPCURL: b.url()})
	if _, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "ping", Node: "n7"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.lastBody(t), `{"user":"alice","method":"ping","data":null,"node":"n7"}`; got != want {
		t.Errorf("the backend got %s, want %s", got, want)
	}
	b.checkSigned(t)
}

func TestRPCRefusesDataThatIsNotJSON(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `true`))
	c, _ := newClient(t, Config{RPCURL: b.url()})
	_, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "ping", Data: json.RawMessage(`{`)})
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("RPC with data {: %v, want an encoding error", err)
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("the backend got %d calls", n)
	}
}

func TestRPCWithoutURLIsNotEnabled(t *testing.T) {
	t.Parallel()
	b := newBackend(t, answer(200, `{"allow":true}`))
	c, _ := newClient(t, Config{AuthorizeURL: b.url()})
	if _, err := c.RPC(t.Context(), RPCRequest{User: "alice", Method: "m"}); !errors.Is(err, ErrNotEnabled) {
		t.Fatalf("RPC: %v, want ErrNotEnabled", err)
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("the backend got %d calls", n)
	}
}
