package service_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// metric returns the value of one sample line of the /metrics text.
func metric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	r := do(t, "GET", n.base+"/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(string(r.body))
	if m == nil {
		t.Fatalf("no sample %s in /metrics", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestMetricsCountWhatHappens(t *testing.T) {
	srv, _ := startRedis(t)
	a := startNode(t, onRedis(srv), "a")
	bob, _ := connect(t, a, "bob")
	alice, _ := connect(t, a, "alice")
	sendDM(t, a, "bob", `1`)
	next(t, bob, "message")
	must(t, alice.SendRaw([]byte(`{"type":"send","to":"bob","data":2}`)))
	ackAndCopy(t, alice) // the copy is a message out to alice, stored in the same script call
	next(t, bob, "message")
	do(t, "PUT", a.base+"/v1/rooms/r/members/bob", "", nil)
	do(t, "POST", a.base+"/v1/rooms/r/messages", "application/json", strings.NewReader(`3`))
	next(t, bob, "message")

	for name, want := range map[string]float64{
		`switchboard_messages_in_total{kind="direct",source="http"}`: 1,
		`switchboard_messages_in_total{kind="direct",source="ws"}`:   1,
		`switchboard_messages_in_total{kind="room",source="http"}`:   1,
		`switchboard_messages_out_total`:                             4,
		`switchboard_connections`:                                    2,
		`switchboard_users`:                                          2,
		`switchboard_publish_seconds_count`:                          3,
		`switchboard_delivery_lag_seconds_count`:                     4,
	} {
		if got := metric(t, a, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
