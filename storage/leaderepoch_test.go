package storage

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func newTestEpochCache(t *testing.T, entries ...EpochEntry) *LeaderEpochCache {
	t.Helper()
	c, err := OpenLeaderEpochCache(filepath.Join(t.TempDir(), "leader-epoch-checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := c.Assign(e.Epoch, e.StartOffset); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// checkPersisted reopens the cache's file and compares it with memory.
func checkPersisted(t *testing.T, c *LeaderEpochCache) {
	t.Helper()
	d, err := OpenLeaderEpochCache(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Entries(), c.Entries(); len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
		t.Fatalf("file holds %v, memory %v", got, want)
	}
}

func TestLeaderEpochCacheFileFormat(t *testing.T) {
	c := newTestEpochCache(t, EpochEntry{0, 0}, EpochEntry{2, 1200}, EpochEntry{5, 3000})
	raw, err := os.ReadFile(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	if want := "0\n3\n0 0\n2 1200\n5 3000\n"; string(raw) != want {
		t.Fatalf("file %q, want %q", raw, want)
	}
	if UndefinedEpoch != -1 || UndefinedEpochOffset != -1 || LeaderEpochCheckpointVersion != 0 {
		t.Fatal("protocol constants changed")
	}
}

func TestLeaderEpochCacheMissingFile(t *testing.T) {
	c := newTestEpochCache(t)
	if _, ok := c.Latest(); ok {
		t.Fatal("empty cache has a latest entry")
	}
	if _, ok := c.Earliest(); ok {
		t.Fatal("empty cache has an earliest entry")
	}
	if e, o := c.EndOffsetFor(0, 100); e != UndefinedEpoch || o != UndefinedEpochOffset {
		t.Fatalf("EndOffsetFor on empty = %d,%d", e, o)
	}
	if _, err := os.Stat(c.Path()); !os.IsNotExist(err) {
		t.Fatal("opening created the file")
	}
}

func TestLeaderEpochCacheAssign(t *testing.T) {
	E := func(es ...int64) []EpochEntry {
		var out []EpochEntry
		for i := 0; i < len(es); i += 2 {
			out = append(out, EpochEntry{int32(es[i]), es[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		before []EpochEntry
		assign EpochEntry
		after  []EpochEntry
	}{
		{"first", nil, EpochEntry{3, 10}, E(3, 10)},
		{"new epoch", E(1, 0), EpochEntry{2, 10}, E(1, 0, 2, 10)},
		{"same epoch, later offset: no-op", E(1, 0, 2, 10), EpochEntry{2, 15}, E(1, 0, 2, 10)},
		{"same epoch, same offset: no-op", E(1, 0, 2, 10), EpochEntry{2, 10}, E(1, 0, 2, 10)},
		{"same epoch, earlier offset moves it", E(1, 0, 2, 10), EpochEntry{2, 5}, E(1, 0, 2, 5)},
		{"same epoch, offset at previous start", E(1, 0, 2, 10), EpochEntry{2, 0}, E(2, 0)},
		{"new epoch at same start replaces", E(1, 0, 2, 10), EpochEntry{3, 10}, E(1, 0, 3, 10)},
		{"new epoch before latest start", E(1, 0, 2, 10, 3, 20), EpochEntry{4, 15}, E(1, 0, 2, 10, 4, 15)},
		{"lower epoch truncates (Kafka)", E(1, 0, 3, 10), EpochEntry{2, 20}, E(1, 0, 2, 20)},
		{"lower epoch, lower start", E(1, 0, 3, 10, 5, 20), EpochEntry{2, 5}, E(1, 0, 2, 5)},
		{"epoch skip", E(1, 0), EpochEntry{7, 100}, E(1, 0, 7, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestEpochCache(t, tc.before...)
			if err := c.Assign(tc.assign.Epoch, tc.assign.StartOffset); err != nil {
				t.Fatal(err)
			}
			if got := c.Entries(); !reflect.DeepEqual(got, tc.after) {
				t.Fatalf("entries %v, want %v", got, tc.after)
			}
			checkPersisted(t, c)
		})
	}
}

func TestLeaderEpochCacheAssignRejects(t *testing.T) {
	c := newTestEpochCache(t, EpochEntry{1, 5})
	for _, e := range []EpochEntry{{-1, 10}, {2, -1}} {
		if err := c.Assign(e.Epoch, e.StartOffset); !errors.Is(err, ErrInvalidEpochEntry) {
			t.Errorf("Assign(%v) = %v", e, err)
		}
	}
	if got := c.Entries(); !reflect.DeepEqual(got, []EpochEntry{{1, 5}}) {
		t.Fatalf("entries %v", got)
	}
}

// A no-op Assign does not rewrite the file.
func TestLeaderEpochCacheNoOpDoesNotWrite(t *testing.T) {
	c := newTestEpochCache(t, EpochEntry{1, 0}, EpochEntry{2, 10})
	if err := os.WriteFile(c.Path(), []byte("marker"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(2, 50); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateFromEnd(11); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateFromStart(0); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(c.Path()); string(raw) != "marker" {
		t.Fatalf("a no-op rewrote the file: %q", raw)
	}
}

func TestLeaderEpochCacheEndOffsetFor(t *testing.T) {
	c := newTestEpochCache(t, EpochEntry{2, 10}, EpochEntry{4, 30}, EpochEntry{7, 55})
	const leo = 80
	for _, tc := range []struct {
		req       int32
		epoch     int32
		endOffset int64
	}{
		{UndefinedEpoch, UndefinedEpoch, UndefinedEpochOffset},
		{-7, UndefinedEpoch, UndefinedEpochOffset},
		{0, 0, 10}, // below the earliest: the earliest start (current Kafka)
		{1, 1, 10},
		{2, 2, 30},
		{3, 2, 30}, // unknown epoch in a gap: the floor epoch, the next start
		{4, 4, 55},
		{5, 4, 55},
		{6, 4, 55},
		{7, 7, leo}, // the latest: the log end offset
		{8, UndefinedEpoch, UndefinedEpochOffset},
		{1 << 30, UndefinedEpoch, UndefinedEpochOffset},
	} {
		if e, o := c.EndOffsetFor(tc.req, leo); e != tc.epoch || o != tc.endOffset {
			t.Errorf("EndOffsetFor(%d) = %d,%d want %d,%d", tc.req, e, o, tc.epoch, tc.endOffset)
		}
	}
	one := newTestEpochCache(t, EpochEntry{3, 0})
	if e, o := one.EndOffsetFor(3, 9); e != 3 || o != 9 {
		t.Errorf("single entry, latest: %d,%d", e, o)
	}
	if e, o := one.EndOffsetFor(2, 9); e != 2 || o != 0 {
		t.Errorf("single entry, below: %d,%d", e, o)
	}
}

func TestLeaderEpochCacheTruncate(t *testing.T) {
	base := []EpochEntry{{1, 0}, {2, 4}, {3, 8}}
	for _, tc := range []struct {
		name  string
		do    func(c *LeaderEpochCache) error
		after []EpochEntry
	}{
		{"end past all", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(100) }, base},
		{"end at latest start", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(8) }, base[:2]},
		{"end inside", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(5) }, base[:2]},
		{"end at middle start", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(4) }, base[:1]},
		{"end at zero", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(0) }, nil},
		{"end negative: no-op", func(c *LeaderEpochCache) error { return c.TruncateFromEnd(-1) }, base},
		{"start at zero", func(c *LeaderEpochCache) error { return c.TruncateFromStart(0) }, base},
		{"start inside first", func(c *LeaderEpochCache) error { return c.TruncateFromStart(2) }, []EpochEntry{{1, 2}, {2, 4}, {3, 8}}},
		{"start at second", func(c *LeaderEpochCache) error { return c.TruncateFromStart(4) }, []EpochEntry{{2, 4}, {3, 8}}},
		{"start inside second", func(c *LeaderEpochCache) error { return c.TruncateFromStart(6) }, []EpochEntry{{2, 6}, {3, 8}}},
		{"start past all", func(c *LeaderEpochCache) error { return c.TruncateFromStart(50) }, []EpochEntry{{3, 50}}},
		{"clear", func(c *LeaderEpochCache) error { return c.Clear() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestEpochCache(t, base...)
			if err := tc.do(c); err != nil {
				t.Fatal(err)
			}
			if got := c.Entries(); !reflect.DeepEqual(got, tc.after) && len(got)+len(tc.after) > 0 {
				t.Fatalf("entries %v, want %v", got, tc.after)
			}
			checkPersisted(t, c)
		})
	}
	// Truncating from the start below the first entry changes nothing.
	c := newTestEpochCache(t, EpochEntry{1, 10})
	if err := c.TruncateFromStart(5); err != nil {
		t.Fatal(err)
	}
	if got := c.Entries(); !reflect.DeepEqual(got, []EpochEntry{{1, 10}}) {
		t.Fatalf("entries %v", got)
	}
}

func TestLeaderEpochCacheCorruptFile(t *testing.T) {
	for _, body := range []string{
		"1\n0\n",               // version
		"0\n2\n1 0\n",          // count
		"0\n1\n1\n",            // one field
		"0\n1\n1 2 3\n",        // three fields
		"0\n1\nx 0\n",          // not a number
		"0\n1\n-1 0\n",         // negative epoch
		"0\n1\n1 -5\n",         // negative offset
		"0\n1\n4294967296 0\n", // epoch beyond int32
		"0\n2\n2 0\n1 5\n",     // epoch goes back
		"0\n2\n1 5\n2 5\n",     // start repeats
		"0\n2\n1 0\n1 5\n",     // epoch repeats
	} {
		path := filepath.Join(t.TempDir(), "leader-epoch-checkpoint")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenLeaderEpochCache(path); !errors.Is(err, ErrCorruptCheckpoint) {
			t.Errorf("%q: got %v, want ErrCorruptCheckpoint", body, err)
		}
	}
}

// A failed write leaves the change in memory and reports the error; the next
// change writes everything.
func TestLeaderEpochCacheWriteError(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenLeaderEpochCache(filepath.Join(dir, "gone", "leader-epoch-checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(1, 0); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := os.Mkdir(filepath.Join(dir, "gone"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(2, 5); err != nil {
		t.Fatal(err)
	}
	checkPersisted(t, c)
	if got := c.Entries(); len(got) != 2 {
		t.Fatalf("entries %v", got)
	}
}

// Writers and readers at once (run with -race): entries always increase and
// the file ends up equal to memory.
func TestLeaderEpochCacheConcurrent(t *testing.T) {
	c := newTestEpochCache(t)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				epoch := int32(i*3 + w)
				if err := c.Assign(epoch, int64(epoch)*10); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			c.Latest()
			c.EndOffsetFor(int32(i%60), 1000)
			es := c.Entries()
			for j := 1; j < len(es); j++ {
				if es[j].Epoch <= es[j-1].Epoch || es[j].StartOffset <= es[j-1].StartOffset {
					t.Errorf("entries not increasing: %v", es)
					return
				}
			}
		}
	}()
	wg.Wait()
	checkPersisted(t, c)
	// The last Assign wins (a lower epoch truncates higher ones): one of
	// the writers' final epochs.
	if l, ok := c.Latest(); !ok || l.Epoch < 57 {
		t.Fatalf("latest %v %v", l, ok)
	}
}

// FuzzOpenLeaderEpochCache: any file content either fails with
// ErrCorruptCheckpoint or opens as a strictly increasing cache whose answers
// are consistent. It never panics.
func FuzzOpenLeaderEpochCache(f *testing.F) {
	f.Add([]byte("0\n3\n0 0\n2 1200\n5 3000\n"), int32(3), int64(4000))
	f.Add([]byte("0\n0\n"), int32(0), int64(0))
	f.Add([]byte("0\n2\n2 0\n1 5\n"), int32(1), int64(9))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, req int32, leo int64) {
		path := filepath.Join(dir, "leader-epoch-checkpoint")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := OpenLeaderEpochCache(path)
		if err != nil {
			if !errors.Is(err, ErrCorruptCheckpoint) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		es := c.Entries()
		for i := 1; i < len(es); i++ {
			if es[i].Epoch <= es[i-1].Epoch || es[i].StartOffset <= es[i-1].StartOffset {
				t.Fatalf("entries not increasing: %v", es)
			}
		}
		epoch, end := c.EndOffsetFor(req, leo)
		if epoch == UndefinedEpoch {
			if end != UndefinedEpochOffset {
				t.Fatalf("EndOffsetFor(%d) = %d,%d", req, epoch, end)
			}
		} else if epoch > req {
			t.Fatalf("EndOffsetFor(%d) answered a later epoch %d", req, epoch)
		}
	})
}
