package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
	"github.com/switchboard-dev/switchboard/subscriptions"
)

// A short soak against a real node: users leave and resume, DMs and posts to small rooms
// and a big one flow, and the node's Pub/Sub link is killed every second. Nothing accepted
// may be lost, duplicated or reordered, and the node must have rebuilt its link.
func TestSoakLosesNothingThroughChurnAndPubSubKills(t *testing.T) {
	// Rooms of 5 are small and the room of 12 is big.
	base, redisURL := startNodeRedis(t, service.Config{}, subscriptions.Config{BigRoomThreshold: 10})

	code, res := runTool(t, "soak", "--url", base, "--redis-addr", redisURL,
		"--users", "30", "--publishers", "2", "--rate", "60",
		"--room-rate", "15", "--rooms", "2", "--room-members", "5", "--big-room-members", "12",
		"--churn-rate", "10", "--offline", "300ms", "--kill-pubsub-every", "1s",
		"--sample-every", "1s", "--duration", "5s", "--grace", "20s",
		"--pid", strconv.Itoa(os.Getpid()))

	if code != exitPass || !res.Passed {
		if res.Soak != nil && res.Soak.RoomDelivery != nil {
			t.Logf("room deliveries: %+v", *res.Soak.RoomDelivery)
		}
		t.Fatalf("exit %d, passed %v, failures %v, warnings %v, DMs %+v", code, res.Passed, res.Failures, res.Warnings, res.Delivery)
	}
	if s := res.Send; s.Accepted == 0 || s.Errors != 0 {
		t.Errorf("DMs: %+v", s)
	}
	if d := res.Delivery; d.Delivered != res.Send.Accepted || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 {
		t.Errorf("DM deliveries: %+v", d)
	}
	s := res.Soak
	if s == nil || s.RoomPosts == nil || s.RoomDelivery == nil {
		t.Fatalf("no soak report: %+v", s)
	}
	if p := s.RoomPosts; p.Accepted == 0 || p.Errors != 0 {
		t.Errorf("room posts: %+v", p)
	}
	d := s.RoomDelivery
	if d.Delivered != d.Expected || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 {
		t.Errorf("room deliveries: %+v", d)
	}
	if s.BigRoomDeliveries == 0 || s.BigRoomDeliveries == d.Delivered {
		t.Errorf("%d of %d room deliveries through the big room: want both paths soaked", s.BigRoomDeliveries, d.Delivered)
	}
	if s.Disconnects == 0 || s.Resumes < s.Disconnects {
		t.Errorf("churn: %d disconnects, %d resumes", s.Disconnects, s.Resumes)
	}
	if s.PubSubKills < 2 || s.PubSubKilledConns == 0 || s.NodePubSubReconnects < 1 {
		t.Errorf("Pub/Sub kills: %d commands, %d connections, %d rebuilt by the node", s.PubSubKills, s.PubSubKilledConns, s.NodePubSubReconnects)
	}
	// A baseline, a sample a second while sending, and the end.
	if len(s.Samples) < 4 || s.Samples[0].Phase != "baseline" || s.Samples[len(s.Samples)-1].Phase != "end" {
		t.Fatalf("samples: %+v", s.Samples)
	}
	for _, smp := range s.Samples {
		if smp.Error != "" || smp.RSSMB <= 0 || smp.Goroutines <= 0 {
			t.Errorf("sample: %+v", smp)
		}
	}
	if s.Flatness == nil || s.Flatness.First.Samples == 0 || s.Flatness.Last.Samples == 0 {
		t.Errorf("flatness: %+v", s.Flatness)
	}
}
