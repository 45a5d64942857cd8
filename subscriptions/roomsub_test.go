package subscriptions

import "testing"

func sid(ms uint64) StreamID { return StreamID{MS: ms} }

// A room read that finds the room small finishes the room subscription at the turn; one that
// finds the room big again since a turn it missed skips the small period between them.
func TestApplyModeFinishesOrSkipsWhatALostControlWouldHave(t *testing.T) {
	rs := &roomSub{s: &Subscription{}, last: sid(10)}
	rs.applyMode(modeHash{big: true, from: sid(5), until: sid(3)})
	if rs.finishing || rs.skipped(sid(11)) || rs.skipped(sid(4)) {
		t.Fatalf("a room big since before rs's position changes nothing: %+v", rs)
	}
	rs.applyMode(modeHash{big: true, from: sid(30), until: sid(20)})
	for ms, want := range map[uint64]bool{15: false, 20: false, 21: true, 30: true, 31: false} {
		if rs.skipped(sid(ms)) != want {
			t.Fatalf("skipped(%d) = %v, want %v", ms, !want, want)
		}
	}
	rs.applyMode(modeHash{big: false, from: sid(30), until: sid(40)})
	if !rs.finishing || rs.until != sid(40) {
		t.Fatalf("a room found small is finished at its turn: %+v", rs)
	}
	rs.applyMode(modeHash{big: false, until: sid(50)})
	if rs.until != sid(40) {
		t.Fatalf("an earlier turn stays the end: until %v", rs.until)
	}
}

func TestParseModeHash(t *testing.T) {
	m := parseModeHash([]any{"1", "5-1", nil})
	if !m.big || m.from != (StreamID{MS: 5, Seq: 1}) || !m.until.IsZero() {
		t.Fatalf("got %+v", m)
	}
	if m := parseModeHash([]any{nil, nil, nil}); m.big {
		t.Fatalf("a missing hash is small: %+v", m)
	}
}

func TestRoomHintsRememberBigRoomsOnly(t *testing.T) {
	var h roomHints
	h.set("a", true)
	h.set("b", false)
	if !h.isBig("a") || h.isBig("b") || h.isBig("c") {
		t.Fatal("hints")
	}
	h.set("a", false)
	if h.isBig("a") {
		t.Fatal("a room found small is forgotten")
	}
	for i := range maxRoomHints + 1 {
		h.set(string(rune('A'+i%26))+string(rune(i)), true)
	}
	if len(h.big) > maxRoomHints {
		t.Fatalf("%d hints kept", len(h.big))
	}
}
