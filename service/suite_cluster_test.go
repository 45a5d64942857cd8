package service_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// TestSuiteOnRedisCluster runs the service's delivery, room, resume, fault, batch, control
// and event tests — the same test functions TestXxx runs on a single Redis — on one real
// 3-master Redis Cluster with sharded Pub/Sub, each under a key prefix of its own.
func TestSuiteOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := redistest.StartCluster(t, 3)
	addrs := "cluster:" + strings.Join(cl.Addrs(), ",")
	suite := []struct {
		name string
		test func(*testing.T, backend)
	}{
		{"DirectMessagePostedToOneNodeReachesUserOnAnother", testDirectMessagePostedToOneNodeReachesUserOnAnother},
		{"PayloadFormsArriveAsDataOrBase64", testPayloadFormsArriveAsDataOrBase64},
		{"UserWithDevicesOnTwoNodesGetsEachMessageOnceOnEach", testUserWithDevicesOnTwoNodesGetsEachMessageOnceOnEach},
		{"ClientSendsDirectMessageAndGetsAck", testClientSendsDirectMessageAndGetsAck},
		{"RoomMessagesReachEveryMemberOnEveryNodeAndDevice", testRoomMessagesReachEveryMemberOnEveryNodeAndDevice},
		{"EveryMemberSeesRoomMessagesInTheSameOrder", testEveryMemberSeesRoomMessagesInTheSameOrder},
		{"ClientAwayResumesWithExactlyWhatItMissed", testClientAwayResumesWithExactlyWhatItMissed},
		{"FreshClientResumesFromWelcomeLastID", testFreshClientResumesFromWelcomeLastID},
		{"PubSubLinkCutMidStreamLosesNothing", testPubSubLinkCutMidStreamLosesNothing},
		{"ConcurrentSendersArriveInStrictIDOrder", testConcurrentSendersArriveInStrictIDOrder},
		{"TrimmedHistoryResumesWithRecoveredFalse", testTrimmedHistoryResumesWithRecoveredFalse},
		{"StalledReaderIsClosedWith1013AndResumesWithoutLoss", testStalledReaderIsClosedWith1013AndResumesWithoutLoss},
		{"DrainingNodeClosesWith1012AndClientsResumeElsewhere", testDrainingNodeClosesWith1012AndClientsResumeElsewhere},
		{"ResumeOfAHistoryLargerThanTheQueueIsPacedNotDropped", testResumeOfAHistoryLargerThanTheQueueIsPacedNotDropped},
		{"BatchSendDeliversEveryItemInOrder", testBatchSendDeliversEveryItemInOrder},
		{"DeleteConnectionsClosesEveryDeviceOnEveryNodeWith4001", testDeleteConnectionsClosesEveryDeviceOnEveryNodeWith4001},
		{"OnlineAndOfflineCountDevicesOnEveryNodeAsOneUser", testOnlineAndOfflineCountDevicesOnEveryNodeAsOneUser},
		{"RoomEventsFromTheWebSocketAndTheAPI", testRoomEventsFromTheWebSocketAndTheAPI},
		{"ClientEventsAreAckedOnceQueuedAndRefusedWhenMalformed", testClientEventsAreAckedOnceQueuedAndRefusedWhenMalformed},
		{"ClusterViewListsLiveNodesAndSubscriberCounts", testClusterViewListsLiveNodesAndSubscriberCounts},
		{"ReconnectFloodOfDMsIsLimitedPerUserAcrossNodes", testReconnectFloodOfDMsIsLimitedPerUserAcrossNodes},
		{"ReconnectFloodOfJoinsIsLimitedPerUserAcrossNodes", testReconnectFloodOfJoinsIsLimitedPerUserAcrossNodes},
		{"RoomQuotasHoldAtTheEdge", testRoomQuotasHoldAtTheEdge},
	}
	for i, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			prefix := fmt.Sprintf("c%d", i)
			tc.test(t, backend{
				spec:   addrs + "|" + prefix,
				prefix: prefix,
				killPubSub: func(t *testing.T) {
					for n := range 3 {
						cl.Node(n).KillPubSubClients(t)
					}
				},
			})
		})
	}
}
