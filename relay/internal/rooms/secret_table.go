package rooms

// wipedTable is a hash table from a fixed-size key (a room id, a secret's hash) to a pointer that overwrites
// every key it lets go: on delete, and the whole old array when it grows. A Go map does neither: it leaves the
// bytes of a deleted key without pointers in its slot, and old arrays behind when it grows, where a memory
// dump finds them after the room is gone (clean-server contract, promise 3).
//
// Keys come from the relay's CSPRNG or SHA-256, so their first 8 bytes are already a uniform hash and a client
// cannot choose keys that collide. Open addressing with linear probing; deleted slots are tombstones until the
// next rebuild.
type wipedTable[K ~[16]byte | ~[32]byte, V any] struct {
	slots []tableSlot[K, V]
	live  int // slots holding a key
	used  int // slots holding a key or a tombstone
}

type tableSlot[K ~[16]byte | ~[32]byte, V any] struct {
	key   K
	val   *V
	state uint8 // slotEmpty, slotLive, slotDead
}

const (
	slotEmpty = iota
	slotLive
	slotDead
)

const minTableSize = 16 // a power of two

func (t *wipedTable[K, V]) len() int { return t.live }

// index returns the first slot to probe for k; len(t.slots) is a power of two.
func (t *wipedTable[K, V]) index(k *K) int {
	var h uint64
	for i := range 8 {
		h |= uint64((*k)[i]) << (8 * i)
	}
	return int(h & uint64(len(t.slots)-1))
}

// find returns the slot holding k, or -1.
func (t *wipedTable[K, V]) find(k *K) int {
	if len(t.slots) == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	for i := t.index(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		switch {
		case s.state == slotEmpty:
			return -1
		case s.state == slotLive && s.key == *k:
			return i
		}
	}
}

// get returns the value for k, or nil.
func (t *wipedTable[K, V]) get(k *K) *V {
	if i := t.find(k); i >= 0 {
		return t.slots[i].val
	}
	return nil
}

// put maps k to v; k must not be in the table yet.
func (t *wipedTable[K, V]) put(k *K, v *V) {
	if (t.used+1)*4 > len(t.slots)*3 {
		t.rebuild()
	}
	mask := len(t.slots) - 1
	i := t.index(k)
	for t.slots[i].state == slotLive {
		i = (i + 1) & mask
	}
	if t.slots[i].state == slotEmpty {
		t.used++
	}
	t.slots[i] = tableSlot[K, V]{key: *k, val: v, state: slotLive}
	t.live++
}

// delete removes k, overwriting its slot, and reports whether it was there.
func (t *wipedTable[K, V]) delete(k *K) bool {
	i := t.find(k)
	if i < 0 {
		return false
	}
	t.slots[i] = tableSlot[K, V]{state: slotDead}
	t.live--
	return true
}

// each calls f for every value, in no particular order; f must not change the table.
func (t *wipedTable[K, V]) each(f func(*V)) {
	for i := range t.slots {
		if t.slots[i].state == slotLive {
			f(t.slots[i].val)
		}
	}
}

// values returns every value, for callers that change the table while they go through them.
func (t *wipedTable[K, V]) values() []*V {
	vs := make([]*V, 0, t.live)
	t.each(func(v *V) { vs = append(vs, v) })
	return vs
}

// rebuild moves the live keys into a fresh array, twice as large if more than half of the old one is live,
// and wipes the old one. It drops the tombstones either way.
func (t *wipedTable[K, V]) rebuild() {
	size := max(minTableSize, len(t.slots))
	if (t.live+1)*2 > size {
		size *= 2
	}
	old := t.slots
	t.slots, t.live, t.used = make([]tableSlot[K, V], size), 0, 0
	for i := range old {
		if old[i].state == slotLive {
			t.put(&old[i].key, old[i].val)
		}
	}
	clear(old)
}
