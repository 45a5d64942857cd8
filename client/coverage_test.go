package client_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/service"
)

// covered maps each /v1 operation of the server's OpenAPI document to the client method
// that calls it. A route added to the document without a method here fails the test below.
var covered = map[string]string{
	"postBatch":       "SendBatch",
	"sendToUser":      "SendToUser",
	"getUserMessages": "Messages",
	"getPresence":     "Presence",
	"getUserRooms":    "Rooms",
	"disconnectUser":  "Disconnect",
	"getMembers":      "Members",
	"addMember":       "AddMember",
	"removeMember":    "RemoveMember",
	"sendToRoom":      "SendToRoom",
	"getRoomMessages": "RoomMessages",
	"getRoomPresence": "RoomPresence",
	"getOpenAPI":      "", // the document itself: for tools, not backends
}

func TestEveryAPIOperationHasAMethod(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(service.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for method, raw := range item {
			var op struct {
				OperationID string `json:"operationId"`
			}
			if json.Unmarshal(raw, &op) != nil || op.OperationID == "" {
				continue // "parameters" and the like
			}
			ops = append(ops, op.OperationID)
			if _, ok := covered[op.OperationID]; !ok {
				t.Errorf("%s %s (%s) has no client method", strings.ToUpper(method), path, op.OperationID)
			}
		}
	}
	sort.Strings(ops)
	if len(ops) != len(covered) {
		t.Errorf("the document has the /v1 operations %v; the client covers %d", ops, len(covered))
	}
}
