package service_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

type batchAnswer struct {
	Results []struct {
		ID         string `json:"id"`
		Recipients *int   `json:"recipients"`
	} `json:"results"`
}

func testBatchSendDeliversEveryItemInOrder(t *testing.T, be backend) {
	a := startNode(t, be, "a")
	b := startNode(t, be, "b")
	bob, _ := connect(t, a, "bob")
	carol, _ := connect(t, b, "carol")
	putMember(t, a, "lobby", "carol")
	putMember(t, a, "lobby", "dave")

	body := `{"messages":[
		{"user":"bob","data":{"n":1}},
		{"room":"lobby","from":"alice","data":"to the room"},
		{"user":"carol","from":"billing","data_b64":"AAEC/w=="},
		{"user":"bob","data":{"n":2}}]}`
	r := do(t, "POST", b.base+"/v1/messages", "application/json", strings.NewReader(body))
	if r.status != http.StatusAccepted {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var ans batchAnswer
	must(t, json.Unmarshal(r.body, &ans))
	if len(ans.Results) != 4 || ans.Results[0].ID == "" || ans.Results[1].Recipients == nil || *ans.Results[1].Recipients != 2 ||
		ans.Results[2].ID == "" || ans.Results[3].ID == "" {
		t.Fatalf("results %s", r.body)
	}
	if m := next(t, bob, "message"); m.ID != ans.Results[0].ID || string(m.Data) != `{"n":1}` {
		t.Fatalf("bob 1: %s", m.Raw)
	}
	if m := next(t, bob, "message"); m.ID != ans.Results[3].ID || string(m.Data) != `{"n":2}` {
		t.Fatalf("bob 2: %s", m.Raw)
	}
	got := map[string]string{}
	for range 2 {
		m := next(t, carol, "message")
		got[m.Room] = string(m.Raw)
	}
	if !strings.Contains(got[""], `"from":"billing","data_b64":"AAEC/w=="`) || !strings.Contains(got["lobby"], `"from":"alice","room":"lobby","data":"to the room"`) {
		t.Fatalf("carol got %v", got)
	}
}

func TestBatchOfAThousandUsers(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	watched, _ := connect(t, a, "u999")
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"user":"u%d","data":%d}`, i, i)
	}
	sb.WriteString(`]}`)
	r := do(t, "POST", a.base+"/v1/messages", "application/json", strings.NewReader(sb.String()))
	var ans batchAnswer
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &ans) != nil || len(ans.Results) != 1000 {
		t.Fatalf("%d %.200s", r.status, r.body)
	}
	if m := next(t, watched, "message"); m.ID != ans.Results[999].ID || string(m.Data) != "999" {
		t.Fatalf("u999 got %s", m.Raw)
	}
	for i := range 1000 {
		h := do(t, "GET", a.base+"/v1/users/u"+strconv.Itoa(i)+"/messages", "", nil)
		if !strings.Contains(string(h.body), ans.Results[i].ID) {
			t.Fatalf("u%d's history lacks %s: %s", i, ans.Results[i].ID, h.body)
		}
	}
}

func TestBatchRefusalsAcceptNothing(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a", func(o *nodeOptions) { o.service.MaxMessageBytes = 100 })
	many := `{"messages":[` + strings.Repeat(`{"user":"x","data":1},`, 1000) + `{"user":"x","data":1}]}`
	cases := []struct {
		name, body string
		status     int
		code, says string
	}{
		{"not JSON", `{"messages":`, 400, "bad_json", ""},
		{"not an object", `[]`, 400, "bad_json", ""},
		{"no messages", `{}`, 400, "bad_request", "messages"},
		{"an empty batch", `{"messages":[]}`, 400, "bad_request", "at least one"},
		{"over a thousand items", many, 400, "bad_request", "1000"},
		{"an unknown field", `{"messages":[{"user":"bob","data":1,"to":"x"}]}`, 400, "bad_json", "to"},
		{"an item with user and room", `{"messages":[{"user":"bob","data":1},{"user":"bob","room":"r","data":1}]}`, 400, "bad_request", "messages[1]"},
		{"an item with neither", `{"messages":[{"data":1}]}`, 400, "bad_request", "messages[0]"},
		{"an invalid user", `{"messages":[{"user":"bob","data":1},{"user":"b b","data":1}]}`, 400, "invalid_id", "messages[1]"},
		{"an invalid room", `{"messages":[{"room":"r:1","data":1}]}`, 400, "invalid_id", "messages[0]"},
		{"an invalid from", `{"messages":[{"user":"bob","from":"{x}","data":1}]}`, 400, "invalid_id", "messages[0]"},
		{"data and data_b64", `{"messages":[{"user":"bob","data":1,"data_b64":"AA=="}]}`, 400, "bad_request", "messages[0]"},
		{"no data", `{"messages":[{"user":"bob"}]}`, 400, "bad_request", "messages[0]"},
		{"bad base64", `{"messages":[{"user":"bob","data_b64":"AA="}]}`, 400, "bad_request", "messages[0]"},
		{"data over the limit", `{"messages":[{"user":"bob","data":"` + strings.Repeat("x", 120) + `"}]}`, 413, "too_large", "messages[0]"},
		{"data with invalid UTF-8", "{\"messages\":[{\"user\":\"bob\",\"data\":1},{\"user\":\"bob\",\"data\":\"\xe9\"}]}", 400, "bad_json", "UTF-8"},
		{"trailing data", `{"messages":[{"user":"bob","data":1}]} {}`, 400, "bad_json", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", a.base+"/v1/messages", "application/json", strings.NewReader(tc.body))
			if r.status != tc.status || r.errorCode(t) != tc.code || !strings.Contains(string(r.body), tc.says) {
				t.Fatalf("%d %s, want %d %s mentioning %q", r.status, r.body, tc.status, tc.code, tc.says)
			}
		})
	}
	if h := do(t, "GET", a.base+"/v1/users/bob/messages", "", nil); string(h.body) != `{"messages":[]}`+"\n" {
		t.Fatalf("refused batches stored something: %s", h.body)
	}
}
