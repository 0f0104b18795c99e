package raftfsm

// pmap is a persistent hash map: a hash trie of 32-way nodes whose updates
// copy only the path from the root to the changed leaf, so an update costs
// O(log32 n) small copies and the old map stays valid and unchanged. It is
// what makes Image copy-on-write by topic: a change to one topic shares every
// other topic's structures with the previous image.
//
// The zero pmap is not usable: make one with newPmap. Iteration order is
// unspecified; callers that need a deterministic order sort.
type pmap[K comparable, V any] struct {
	root *pnode[K, V]
	n    int
	hash func(K) uint32
}

const (
	pmapBits     = 5
	pmapFan      = 1 << pmapBits
	pmapMask     = pmapFan - 1
	pmapMaxDepth = 6 // 6*5 = 30 hash bits; below that a leaf just grows.
	pmapLeafMax  = 8 // a leaf splits once it holds more entries than this
	pmapShift0   = 32 - pmapBits
)

type pentry[K comparable, V any] struct {
	k K
	v V
}

// pnode is a leaf (children == nil) or an inner node.
type pnode[K comparable, V any] struct {
	children *[pmapFan]*pnode[K, V]
	entries  []pentry[K, V]
}

func newPmap[K comparable, V any](hash func(K) uint32) pmap[K, V] {
	return pmap[K, V]{hash: hash}
}

func (m pmap[K, V]) Len() int { return m.n }

func (m pmap[K, V]) Get(k K) (V, bool) {
	h := m.hash(k)
	n := m.root
	for depth := 0; n != nil; depth++ {
		if n.children == nil {
			for i := range n.entries {
				if n.entries[i].k == k {
					return n.entries[i].v, true
				}
			}
			break
		}
		n = n.children[slot(h, depth)]
	}
	var zero V
	return zero, false
}

func slot(h uint32, depth int) int {
	return int(h>>(pmapShift0-uint(depth)*pmapBits)) & pmapMask
}

// Set returns a map with k set to v; m is unchanged.
func (m pmap[K, V]) Set(k K, v V) pmap[K, V] {
	root, added := m.set(m.root, m.hash(k), 0, k, v)
	out := m
	out.root = root
	if added {
		out.n++
	}
	return out
}

func (m pmap[K, V]) set(n *pnode[K, V], h uint32, depth int, k K, v V) (*pnode[K, V], bool) {
	if n == nil {
		return &pnode[K, V]{entries: []pentry[K, V]{{k, v}}}, true
	}
	if n.children != nil {
		c := *n.children
		child, added := m.set(c[slot(h, depth)], h, depth+1, k, v)
		c[slot(h, depth)] = child
		return &pnode[K, V]{children: &c}, added
	}
	for i := range n.entries {
		if n.entries[i].k == k {
			es := make([]pentry[K, V], len(n.entries))
			copy(es, n.entries)
			es[i].v = v
			return &pnode[K, V]{entries: es}, false
		}
	}
	if len(n.entries) < pmapLeafMax || depth >= pmapMaxDepth {
		es := make([]pentry[K, V], len(n.entries), len(n.entries)+1)
		copy(es, n.entries)
		return &pnode[K, V]{entries: append(es, pentry[K, V]{k, v})}, true
	}
	// Split the full leaf into an inner node, then insert.
	inner := &pnode[K, V]{children: new([pmapFan]*pnode[K, V])}
	for _, e := range n.entries {
		s := slot(m.hash(e.k), depth)
		inner.children[s], _ = m.set(inner.children[s], m.hash(e.k), depth+1, e.k, e.v)
	}
	s := slot(h, depth)
	inner.children[s], _ = m.set(inner.children[s], h, depth+1, k, v)
	return inner, true
}

// Delete returns a map without k; m is unchanged.
func (m pmap[K, V]) Delete(k K) pmap[K, V] {
	root, removed := m.del(m.root, m.hash(k), 0, k)
	if !removed {
		return m
	}
	out := m
	out.root = root
	out.n--
	return out
}

func (m pmap[K, V]) del(n *pnode[K, V], h uint32, depth int, k K) (*pnode[K, V], bool) {
	if n == nil {
		return nil, false
	}
	if n.children != nil {
		s := slot(h, depth)
		child, removed := m.del(n.children[s], h, depth+1, k)
		if !removed {
			return n, false
		}
		c := *n.children
		c[s] = child
		for _, x := range c {
			if x != nil {
				return &pnode[K, V]{children: &c}, true
			}
		}
		return nil, true
	}
	for i := range n.entries {
		if n.entries[i].k == k {
			if len(n.entries) == 1 {
				return nil, true
			}
			es := make([]pentry[K, V], 0, len(n.entries)-1)
			es = append(es, n.entries[:i]...)
			es = append(es, n.entries[i+1:]...)
			return &pnode[K, V]{entries: es}, true
		}
	}
	return n, false
}

// Range calls fn for every entry, in no particular order, until fn returns false.
func (m pmap[K, V]) Range(fn func(K, V) bool) {
	rangeNode(m.root, fn)
}

func rangeNode[K comparable, V any](n *pnode[K, V], fn func(K, V) bool) bool {
	if n == nil {
		return true
	}
	if n.children == nil {
		for _, e := range n.entries {
			if !fn(e.k, e.v) {
				return false
			}
		}
		return true
	}
	for _, c := range n.children {
		if !rangeNode(c, fn) {
			return false
		}
	}
	return true
}

// hashString is FNV-1a: fixed, so the trie's shape is the same in every process.
func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func hashTopicID(id TopicID) uint32 {
	h := uint32(2166136261)
	for _, b := range id {
		h ^= uint32(b)
		h *= 16777619
	}
	return h
}
