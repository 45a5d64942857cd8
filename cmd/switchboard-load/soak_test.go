package main

import (
	"os"
	"strconv"
	"testing"
	"time"

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

// Without the first posts, the big room turns big under churn: a member away at the turn
// comes back without the room's position and starts at its newest message. Run it with
// SOAK_TURN=1 to see whether the server still loses those deliveries.
func TestSoakWithTheTurnUnderChurn(t *testing.T) {
	if os.Getenv("SOAK_TURN") == "" {
		t.Skip("a known gap at a room's turn to big (cmd/switchboard-load/README.md); SOAK_TURN=1 runs it")
	}
	base, redisURL := startNodeRedis(t, service.Config{}, subscriptions.Config{BigRoomThreshold: 10})
	code, res := runTool(t, "soak", "--url", base, "--redis-addr", redisURL, "--first-posts=false",
		"--users", "30", "--publishers", "2", "--rate", "60",
		"--room-rate", "15", "--rooms", "2", "--room-members", "5", "--big-room-members", "12",
		"--churn-rate", "10", "--offline", "300ms", "--kill-pubsub-every", "0",
		"--sample-every", "1s", "--duration", "3s", "--grace", "10s")
	if code != exitPass {
		t.Fatalf("exit %d, failures %v, room deliveries %+v", code, res.Failures, res.Soak.RoomDelivery)
	}
}

// The series the soak reads are summed over nodes; comments, labelled series and other
// metrics are skipped.
func TestParseMetricsSumsTheSeriesItReads(t *testing.T) {
	var m nodeMetrics
	parseMetrics([]byte("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 120\n"+
		"go_goroutines_other 5\nprocess_resident_memory_bytes 5.24288e+07\nswitchboard_connections 30\n"+
		"switchboard_connections_closed_total{reason=\"slow_consumer\"} 3\nswitchboard_pubsub_reconnects_total 2\n"), &m)
	parseMetrics([]byte("go_goroutines 80\nswitchboard_pubsub_reconnects_total 1\nswitchboard_caught_up_messages_total 7\n"), &m)
	want := nodeMetrics{goroutines: 200, rss: 52428800, connections: 30, reconnects: 3, caughtUp: 7}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
}

// Flatness compares the first and the last window of the loaded samples, leaving out the
// baseline before the load and the sample after it.
func TestFlatnessComparesTheFirstAndLastWindowsOfLoad(t *testing.T) {
	samples := []SoakSample{{AtS: 0, Phase: "baseline", RSSMB: 10, Goroutines: 50}}
	for i := 1; i <= 20; i++ { // every 30 s for 10 minutes
		samples = append(samples, SoakSample{AtS: float64(30 * i), Phase: "load", RSSMB: float64(100 + i), Goroutines: int64(1000 + i)})
	}
	samples = append(samples, SoakSample{AtS: 615, Phase: "end", RSSMB: 500, Goroutines: 9000})
	f := flatness(samples, 10*time.Minute, 30*time.Second)
	if f == nil || f.WindowS != 60 || f.First.Samples != 2 || f.First.FromS != 30 || f.First.ToS != 60 ||
		f.Last.Samples != 3 || f.Last.FromS != 540 || f.Last.ToS != 600 {
		t.Fatalf("windows: %+v", f)
	}
	if f.First.RSSMB != 101.5 || f.Last.RSSMB != 119 || f.RSSGrowthPct != 17.2 ||
		f.First.GoroutinesMin != 1001 || f.First.GoroutinesMax != 1002 || f.Last.GoroutinesMin != 1018 || f.Last.GoroutinesMax != 1020 {
		t.Fatalf("figures: %+v", f)
	}
	if flatness(samples[:2], 10*time.Minute, 30*time.Second) != nil {
		t.Error("one loaded sample gave a flatness")
	}
}
