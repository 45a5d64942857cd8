package service_test

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/internal/redistest"
)

// suite lists the service's tests written against a backend — delivery, rooms, resume,
// faults, batches, control, events and per-user limits. Each runs on a redis-server of its
// own (TestSuite) and on a share of a Redis Cluster (TestSuiteOnRedisCluster), named after
// its function without the "test" prefix: adding a test to both is one line here.
func suite() []func(*testing.T, backend) {
	return []func(*testing.T, backend){
		testDirectMessagePostedToOneNodeReachesUserOnAnother,
		testPayloadFormsArriveAsDataOrBase64,
		testUserWithDevicesOnTwoNodesGetsEachMessageOnceOnEach,
		testClientSendsDirectMessageAndGetsAck,
		testRoomMessagesReachEveryMemberOnEveryNodeAndDevice,
		testEveryMemberSeesRoomMessagesInTheSameOrder,
		testClientAwayResumesWithExactlyWhatItMissed,
		testFreshClientResumesFromWelcomeLastID,
		testPubSubLinkCutMidStreamLosesNothing,
		testConcurrentSendersArriveInStrictIDOrder,
		testTrimmedHistoryResumesWithRecoveredFalse,
		testStalledReaderIsClosedWith1013AndResumesWithoutLoss,
		testDrainingNodeClosesWith1012AndClientsResumeElsewhere,
		testResumeOfAHistoryLargerThanTheQueueIsPacedNotDropped,
		testBatchSendDeliversEveryItemInOrder,
		testDeleteConnectionsClosesEveryDeviceOnEveryNodeWith4001,
		testOnlineAndOfflineCountDevicesOnEveryNodeAsOneUser,
		testRoomEventsFromTheWebSocketAndTheAPI,
		testClientEventsAreAckedOnceQueuedAndRefusedWhenMalformed,
		testClusterViewListsLiveNodesAndSubscriberCounts,
		testReconnectFloodOfDMsIsLimitedPerUserAcrossNodes,
		testReconnectFloodOfJoinsIsLimitedPerUserAcrossNodes,
		testRoomQuotasHoldAtTheEdge,
		testWelcomeListsTheUsersRooms,
		testClientDMIsCopiedToEverySenderDeviceAndHistory,
		testFailedSenderCopyStillAcksTheRecipientsMessage,
		testRoomHistoryIsKeptOnceAndReadByMembersOnly,
		testLargeRoomHistoryIDReachesEveryMember,
		testEphemeralSendsArePublishedNeverStored,
		testRoomPresenceListsMembersOnlineOnAnyNode,
		testIdempotencyKeysDeliverEachSendOnce,
		testBigRoomIsOneCopyDeliveredToEveryMemberOnEveryNode,
		testBigRoomLosesNothingWhenThePubSubLinkIsCut,
		testBigRoomResumesFromItsPosition,
		testBigRoomMembershipChangesReachTheUsersNodeAtOnce,
		testRoomGrowingAndShrinkingKeepsOneOrderAndLosesNothing,
		testRoomTurningBigWhileAMemberIsAwayLosesNothing,
		testRoomFlippingUnderConcurrentSendsKeepsOneOrderForEveryMember,
		testBigRoomStalledReaderIsClosedWith1013AndResumesWithoutLoss,
		testBigRoomDrainingNodeClosesWith1012AndClientsResumeElsewhere,
		testBigRoomClientSendsLeavesAndEphemeralsOverTheWebSocket,
	}
}

// suiteName is a suite test's subtest name: its function's name without "test", so that
// `go test -run 'TestSuite/ClientAway'` finds it under the name it is written with.
func suiteName(test func(*testing.T, backend)) string {
	name := runtime.FuncForPC(reflect.ValueOf(test).Pointer()).Name()
	return strings.TrimPrefix(name[strings.LastIndexByte(name, '.')+1:], "test")
}

// TestSuite runs the suite, each test on a redis-server of its own.
func TestSuite(t *testing.T) {
	for _, test := range suite() {
		t.Run(suiteName(test), func(t *testing.T) { test(t, singleRedis(t)) })
	}
}

// TestSuiteOnRedisCluster runs the suite on one real 3-master Redis Cluster with sharded
// Pub/Sub, each test under a key prefix of its own.
func TestSuiteOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	const masters = 3
	cl := redistest.StartCluster(t, masters)
	for i, test := range suite() {
		t.Run(suiteName(test), func(t *testing.T) { test(t, onCluster(cl, masters, fmt.Sprintf("c%d", i))) })
	}
}

func TestSuiteNamesAreTheTestFunctionsNames(t *testing.T) {
	if got := suiteName(testRoomQuotasHoldAtTheEdge); got != "RoomQuotasHoldAtTheEdge" {
		t.Fatalf("suiteName = %q", got)
	}
}
