package rooms

import (
	"crypto/rand"
	"testing"
)

func TestHashEqual(t *testing.T) {
	var a, b Secret
	a.Fill()
	b = a
	ha, hb := a.Hash(), b.Hash()
	if !hashEqual(&ha, &hb) {
		t.Fatal("equal hashes compare unequal")
	}
	b[31] ^= 1
	hb = b.Hash()
	if hashEqual(&ha, &hb) {
		t.Fatal("different hashes compare equal")
	}
	a.Wipe()
	if a != (Secret{}) {
		t.Fatal("wipe left bytes")
	}
}

func TestWipedTable(t *testing.T) {
	var tb wipedTable[RoomID, Room]
	ref := map[RoomID]*Room{}
	var keys []RoomID
	for i := range 3000 {
		var k RoomID
		rand.Read(k[:])
		v := &Room{max: i}
		tb.put(&k, v)
		ref[k] = v
		keys = append(keys, k)
		if i%3 == 0 { // delete as it goes, so that tombstones and rebuilds mix
			d := keys[i/2]
			if _, ok := ref[d]; ok {
				if !tb.delete(&d) {
					t.Fatalf("delete of a present key failed")
				}
				delete(ref, d)
			}
		}
	}
	if tb.len() != len(ref) {
		t.Fatalf("len %d, want %d", tb.len(), len(ref))
	}
	for _, k := range keys {
		if got := tb.get(&k); got != ref[k] {
			t.Fatalf("get gave %v, want %v", got, ref[k])
		}
	}
	n := 0
	tb.each(func(*Room) { n++ })
	if n != len(ref) || len(tb.values()) != len(ref) {
		t.Fatalf("each saw %d, values %d, want %d", n, len(tb.values()), len(ref))
	}
	var missing RoomID
	if tb.get(&missing) != nil || tb.delete(&missing) {
		t.Fatal("a missing key was found")
	}
	// Every slot that does not hold a live key is all zero: deleted keys were overwritten.
	for _, s := range tb.slots {
		if s.state != slotLive && (s.key != RoomID{} || s.val != nil) {
			t.Fatalf("a free slot still holds key % x", s.key)
		}
	}
}

// TestWipedTableWipesOldArray: when the table grows, the array it leaves is zeroed.
func TestWipedTableWipesOldArray(t *testing.T) {
	var tb wipedTable[[32]byte, Member]
	var k [32]byte
	rand.Read(k[:])
	tb.put(&k, &Member{})
	old := tb.slots
	for range minTableSize {
		var k [32]byte
		rand.Read(k[:])
		tb.put(&k, &Member{})
	}
	if len(tb.slots) == len(old) {
		t.Fatal("the table did not grow")
	}
	for i := range old {
		if old[i] != (tableSlot[[32]byte, Member]{}) {
			t.Fatalf("slot %d of the old array still holds key % x", i, old[i].key)
		}
	}
	if tb.get(&k) == nil {
		t.Fatal("a key was lost when the table grew")
	}
}
