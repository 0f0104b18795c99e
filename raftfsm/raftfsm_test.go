package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

// ---- record helpers ----

func tid(i int) TopicID {
	var id TopicID
	id[0] = 0xAB
	id[12], id[13], id[14], id[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return id
}

func recTopic(name string, id TopicID) *stratav1.MetadataRecord {
	return &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_Topic{Topic: &stratav1.TopicRecord{Name: name, TopicId: id.Bytes()}}}
}

func recPartition(id TopicID, p int32, replicas ...int32) *stratav1.MetadataRecord {
	return &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_Partition{Partition: &stratav1.PartitionRecord{
		TopicId: id.Bytes(), Partition: p, Replicas: replicas, Isr: replicas, Leader: replicas[0],
	}}}
}

func recISR(id TopicID, p int32, leaderEpoch, partitionEpoch int32, isr ...int32) *stratav1.MetadataRecord {
	return &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_PartitionChange{PartitionChange: &stratav1.PartitionChangeRecord{
		TopicId: id.Bytes(), Partition: p, Isr: &stratav1.Int32List{Values: isr},
		LeaderEpoch: leaderEpoch, PartitionEpoch: partitionEpoch,
	}}}
}

func recBroker(id int32, epoch int64) *stratav1.MetadataRecord {
	inc := make([]byte, 16)
	inc[0] = byte(id)
	inc[1] = byte(epoch)
	return &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_RegisterBroker{RegisterBroker: &stratav1.RegisterBrokerRecord{
		BrokerId: id, IncarnationId: inc, BrokerEpoch: epoch, Rack: fmt.Sprintf("r%d", id%3),
		Listeners: []*stratav1.Listener{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9000 + id}},
	}}}
}

func batchBytes(t testing.TB, recs ...*stratav1.MetadataRecord) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&stratav1.MetadataBatch{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stream is a recorded record stream: a mix of every kind of change, some
// malformed, driven by a seeded generator so it is the same on every run.
func stream(seed uint64, n int) []*stratav1.MetadataBatch {
	rng := rand.New(rand.NewPCG(seed, seed))
	img := NewImage()
	var out []*stratav1.MetadataBatch
	var recs []*stratav1.MetadataRecord
	for b := int32(1); b <= 5; b++ {
		recs = append(recs, recBroker(b, 1))
	}
	out = append(out, &stratav1.MetadataBatch{Records: recs})
	img, _ = ReplayRecords(img, 1, recs)
	topics := 0
	for i := 0; len(out) < n; i++ {
		var recs []*stratav1.MetadataRecord
		switch k := rng.IntN(10); {
		case k < 3 || img.NumTopics() == 0:
			id := tid(topics)
			recs = append(recs, recTopic(fmt.Sprintf("t%03d", topics), id))
			for p := int32(0); p < int32(1+rng.IntN(4)); p++ {
				r := int32(1 + rng.IntN(5))
				recs = append(recs, recPartition(id, p, r, 1+r%5, 1+(r+1)%5))
			}
			topics++
		case k < 8:
			// ISR change of a random partition, from the current image's state
			// (sometimes with a wrong epoch: a rejected batch).
			t := img.Topics()[rng.IntN(img.NumTopics())]
			if t.NumPartitions() == 0 {
				continue
			}
			pi := int32(rng.IntN(t.NumPartitions()))
			p := t.Partition(pi)
			isr := []int32{p.Leader}
			for _, r := range p.Replicas {
				if r != p.Leader && rng.IntN(2) == 0 {
					isr = append(isr, r)
				}
			}
			pe := p.PartitionEpoch + 1
			if rng.IntN(10) == 0 {
				pe++
			}
			recs = append(recs, recISR(t.ID(), pi, p.LeaderEpoch, pe, isr...))
		case k < 9:
			t := img.Topics()[rng.IntN(img.NumTopics())]
			recs = append(recs, &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_Config{Config: &stratav1.ConfigRecord{
				ResourceType: stratav1.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC, ResourceName: t.Name(),
				Key: fmt.Sprintf("k%d", rng.IntN(3)), Value: fmt.Sprint(i),
			}}})
		default:
			t := img.Topics()[rng.IntN(img.NumTopics())]
			recs = append(recs, &stratav1.MetadataRecord{Record: &stratav1.MetadataRecord_RemoveTopic{RemoveTopic: &stratav1.RemoveTopicRecord{TopicId: t.ID().Bytes()}}})
		}
		batch := &stratav1.MetadataBatch{Records: recs}
		img, _ = ApplyBatch(img, int64(len(out)+1), batch)
		out = append(out, batch)
	}
	return out
}

func replayStream(t testing.TB, batches []*stratav1.MetadataBatch) *Image {
	img := NewImage()
	for i, b := range batches {
		img, _ = ApplyBatch(img, int64(i+1), b)
	}
	return img
}

// ---- determinism and snapshots ----

func TestSameRecordsSameSnapshotBytes(t *testing.T) {
	batches := stream(42, 400)
	a := replayStream(t, batches)
	b := replayStream(t, batches)
	sa, err := a.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := b.MarshalSnapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("same records gave different snapshot bytes")
	}
	if a.ErrorCount() == 0 || a.NumTopics() == 0 {
		t.Fatalf("stream too tame: %d errors, %d topics", a.ErrorCount(), a.NumTopics())
	}
	// Through the FSM (raft.Log with marshaled batches), the same.
	f := NewFSM(nil)
	for i, batch := range batches {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: batchBytes(t, batch.Records...)})
	}
	sf, _ := f.Image().MarshalSnapshot()
	if !bytes.Equal(sa, sf) {
		t.Fatal("FSM.Apply and ApplyBatch disagree")
	}
	// Through Replay, as a broker does.
	var entries []*stratav1.MetadataLogEntry
	for i, b := range batches {
		entries = append(entries, &stratav1.MetadataLogEntry{Offset: int64(i + 1), Batch: b})
	}
	r, err := Replay(NewImage(), entries...)
	if err == nil {
		t.Fatal("Replay hid the rejected batches")
	}
	sr, _ := r.MarshalSnapshot()
	if !bytes.Equal(sa, sr) {
		t.Fatal("Replay and ApplyBatch disagree")
	}
	// Replaying again from the middle skips what is applied.
	r2, err := Replay(r, entries[len(entries)/2:]...)
	if err != nil || r2 != r {
		t.Fatalf("re-fetched entries were applied again: %v", err)
	}
}

func TestSnapshotRestoreIdentical(t *testing.T) {
	img := replayStream(t, stream(7, 300))
	data, err := img.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != img.String() {
		t.Fatalf("restored image differs:\n%s\nwant\n%s", back, img)
	}
	again, _ := back.MarshalSnapshot()
	if !bytes.Equal(again, data) {
		t.Fatal("snapshot of restored image differs")
	}
	// Lookups work on the restored image.
	for _, top := range img.Topics() {
		if back.Topic(top.Name()) == nil || back.TopicByID(top.ID()).Name() != top.Name() {
			t.Fatalf("topic %s not found after restore", top.Name())
		}
	}
	if back.NumPartitions() != img.NumPartitions() {
		t.Fatalf("partitions %d, want %d", back.NumPartitions(), img.NumPartitions())
	}
	// And the stream continues identically on both.
	more := stream(8, 50)
	a, b := img, back
	for i, batch := range more {
		off := img.Offset() + int64(i) + 1
		a, _ = ApplyBatch(a, off, batch)
		b, _ = ApplyBatch(b, off, batch)
	}
	if a.String() != b.String() {
		t.Fatal("images diverged after restore")
	}
}

func TestCorruptSnapshot(t *testing.T) {
	img := replayStream(t, stream(9, 50))
	data, _ := img.MarshalSnapshot()
	if _, err := UnmarshalSnapshot(data[:len(data)/2]); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("truncated snapshot: %v", err)
	}
	m := img.ToProto()
	m.Topics[0], m.Topics[1] = m.Topics[1], m.Topics[0]
	if _, err := FromProto(m); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("unsorted topics: %v", err)
	}
	m = img.ToProto()
	m.Topics[0].Partitions[0].Isr = []int32{99}
	if _, err := FromProto(m); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("bad ISR: %v", err)
	}
	f := NewFSM(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte{0xff, 0xff}))); err == nil {
		t.Fatal("FSM restored garbage")
	}
	if f.Image().Offset() != 0 {
		t.Fatal("failed restore changed the image")
	}
}

// ---- malformed input ----

func TestMalformedBatchChangesNothing(t *testing.T) {
	base := replayStream(t, stream(3, 100))
	before := base.String()
	top := base.Topics()[0]
	cases := map[string][]*stratav1.MetadataRecord{
		"unknown topic id":        {recISR(tid(9999), 0, 0, 1, 1)},
		"partition of missing":    {recPartition(tid(9999), 0, 1)},
		"epoch backwards":         {recISR(top.ID(), 0, 0, top.Partition(0).PartitionEpoch, 1)},
		"empty isr with leader":   {recISR(top.ID(), 0, top.Partition(0).LeaderEpoch, top.Partition(0).PartitionEpoch+1)},
		"good then bad":           {recTopic("fresh", tid(5000)), recPartition(tid(9999), 0, 1)},
		"empty record":            {{}},
		"duplicate topic":         {recTopic(top.Name(), tid(5001))},
		"broker epoch not raised": {recBroker(1, 1)},
	}
	for name, recs := range cases {
		t.Run(name, func(t *testing.T) {
			img, err := ReplayRecords(base, base.Offset()+1, recs)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if base.String() != before {
				t.Fatal("the old image changed")
			}
			if img.Offset() != base.Offset()+1 || img.ErrorCount() != base.ErrorCount()+1 {
				t.Fatalf("offset %d errors %d", img.Offset(), img.ErrorCount())
			}
			last := img.LastErrors()[len(img.LastErrors())-1]
			if last.Offset != img.Offset() || last.Message != err.Error() {
				t.Fatalf("recorded %+v, want %v", last, err)
			}
			// Apart from the offset and the error log, nothing moved.
			strip := func(s string) string {
				var keep []string
				for _, l := range strings.Split(s, "\n")[1:] {
					if !strings.HasPrefix(l, "error @") {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			}
			if strip(img.String()) != strip(before) {
				t.Fatalf("state changed:\n%s\nwant\n%s", img, before)
			}
		})
	}
	// Undecodable bytes through the FSM.
	f := NewFSM(nil)
	f.RestoreImage(base)
	res := f.Apply(&raft.Log{Index: uint64(base.Offset() + 1), Type: raft.LogCommand, Data: []byte{0x0a, 0xff}}).(ApplyResult)
	if !errors.Is(res.Err, ErrMalformed) || res.Offset != base.Offset()+1 || f.Image().Offset() != res.Offset {
		t.Fatalf("garbage entry: %+v", res)
	}
}

func TestStaleOffset(t *testing.T) {
	img, err := ApplyRecord(NewImage(), 5, recTopic("a", tid(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{5, 4, 0, -1} {
		got, err := ApplyRecord(img, off, recTopic("b", tid(2)))
		if !errors.Is(err, ErrStaleOffset) || got != img {
			t.Fatalf("offset %d: %v", off, err)
		}
	}
}

// ---- copy-on-write ----

func TestCopyOnWrite(t *testing.T) {
	img := replayStream(t, stream(11, 200))
	before := img.String()
	topics := img.Topics()
	a, b := topics[0], topics[1]
	pa := a.Partition(0)
	next, err := ApplyRecord(img, img.Offset()+1, recISR(a.ID(), 0, pa.LeaderEpoch, pa.PartitionEpoch+1, pa.Leader))
	if err != nil {
		t.Fatal(err)
	}
	if img.String() != before {
		t.Fatal("old image changed")
	}
	if next.Topic(b.Name()) != b {
		t.Fatal("an unchanged topic was copied")
	}
	na := next.Topic(a.Name())
	if na == a || next.TopicByID(a.ID()) != na {
		t.Fatal("the changed topic was not copied into both indexes")
	}
	if na.Partition(0) == pa || img.Topic(a.Name()).Partition(0) != pa {
		t.Fatal("partition not copied on write")
	}
	for i := int32(1); i < int32(a.NumPartitions()); i++ {
		if na.Partition(i) != a.Partition(i) {
			t.Fatalf("unchanged partition %d copied", i)
		}
	}
	// Getters hand out copies of maps.
	a2 := next.Topic(a.Name())
	a2.Configs()["x"] = "y"
	if _, ok := a2.Config("x"); ok {
		t.Fatal("Configs() exposed the image's map")
	}
}

// ---- FSM ----

type memSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := NewFSM(nil)
	batches := stream(5, 120)
	for i, b := range batches[:100] {
		res := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: batchBytes(t, b.Records...)})
		if r, ok := res.(ApplyResult); !ok || r.Offset != int64(i+1) {
			t.Fatalf("Apply returned %#v", res)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := f.Image().String()
	// Applies after Snapshot do not leak into the snapshot.
	for i, b := range batches[100:] {
		f.Apply(&raft.Log{Index: uint64(101 + i), Type: raft.LogCommand, Data: batchBytes(t, b.Records...)})
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v closed=%v", err, sink.closed)
	}
	snap.Release()
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.Image().String() != want {
		t.Fatal("restored FSM differs from the snapshot point")
	}
}

func TestFSMNonCommandEntriesMoveOffset(t *testing.T) {
	f := NewFSM(nil)
	f.Apply(&raft.Log{Index: 3, Type: raft.LogConfiguration})
	if f.Image().Offset() != 3 {
		t.Fatalf("offset %d", f.Image().Offset())
	}
	res := f.ApplyBatch([]*raft.Log{
		{Index: 4, Type: raft.LogCommand, Data: batchBytes(t, recTopic("a", tid(1)))},
		{Index: 5, Type: raft.LogNoop},
		{Index: 6, Type: raft.LogCommand, Data: batchBytes(t, recTopic("a", tid(2)))},
	})
	if len(res) != 3 || res[0].(ApplyResult).Err != nil || !errors.Is(res[2].(ApplyResult).Err, ErrMalformed) {
		t.Fatalf("results %v", res)
	}
	if img := f.Image(); img.Offset() != 6 || img.Topic("a") == nil || img.ErrorCount() != 1 {
		t.Fatalf("image %s", img)
	}
	// A repeated index is refused, not recorded.
	r := f.Apply(&raft.Log{Index: 6, Type: raft.LogCommand, Data: batchBytes(t, recTopic("b", tid(3)))}).(ApplyResult)
	if !errors.Is(r.Err, ErrStaleOffset) || f.Image().Topic("b") != nil {
		t.Fatalf("stale entry: %v", r.Err)
	}
}

func TestFSMWaitFor(t *testing.T) {
	f := NewFSM(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan *Image)
	go func() {
		img, err := f.WaitFor(ctx, 3)
		if err != nil {
			t.Error(err)
		}
		done <- img
	}()
	for i := uint64(1); i <= 3; i++ {
		f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: batchBytes(t, recTopic(fmt.Sprint(i), tid(int(i))))})
	}
	if img := <-done; img.Offset() < 3 {
		t.Fatalf("woke at offset %d", img.Offset())
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	img, err := f.WaitFor(short, 100)
	if !errors.Is(err, context.DeadlineExceeded) || img.Offset() != 3 {
		t.Fatalf("WaitFor past the end: %v %d", err, img.Offset())
	}
}

// Readers racing with Apply see whole images (run with -race).
func TestFSMConcurrentReaders(t *testing.T) {
	f := NewFSM(nil)
	batches := stream(13, 300)
	stop := make(chan struct{})
	errc := make(chan error, 2)
	for r := 0; r < 2; r++ {
		go func() {
			for {
				select {
				case <-stop:
					errc <- nil
					return
				default:
				}
				img := f.Image()
				n := 0
				for _, top := range img.Topics() {
					n += top.NumPartitions()
				}
				if n != img.NumPartitions() {
					errc <- fmt.Errorf("offset %d: %d partitions counted, image says %d", img.Offset(), n, img.NumPartitions())
					return
				}
			}
		}()
	}
	for i, b := range batches {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: batchBytes(t, b.Records...)})
		if i%50 == 0 {
			snap, _ := f.Snapshot()
			go func() { var s memSink; _ = snap.Persist(&s) }()
		}
	}
	close(stop)
	for r := 0; r < 2; r++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// ---- the persistent map ----

func TestPmapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newPmap[string, int](hashString)
	model := map[string]int{}
	var history []pmap[string, int]
	var models []map[string]int
	for i := 0; i < 20000; i++ {
		k := fmt.Sprint(rng.IntN(3000))
		if rng.IntN(3) == 0 {
			m = m.Delete(k)
			delete(model, k)
		} else {
			m = m.Set(k, i)
			model[k] = i
		}
		if i%2000 == 0 {
			snap := map[string]int{}
			for k, v := range model {
				snap[k] = v
			}
			history = append(history, m)
			models = append(models, snap)
		}
	}
	history = append(history, m)
	models = append(models, model)
	// Every old version is still exactly what it was.
	for h, pm := range history {
		want := models[h]
		if pm.Len() != len(want) {
			t.Fatalf("version %d: len %d, want %d", h, pm.Len(), len(want))
		}
		n := 0
		pm.Range(func(k string, v int) bool {
			n++
			if want[k] != v {
				t.Fatalf("version %d: %s=%d, want %d", h, k, v, want[k])
			}
			return true
		})
		if n != len(want) {
			t.Fatalf("version %d: ranged %d", h, n)
		}
		for k, v := range want {
			if got, ok := pm.Get(k); !ok || got != v {
				t.Fatalf("version %d: Get(%s) = %d,%v", h, k, got, ok)
			}
		}
	}
	// Colliding hashes still work (a leaf at max depth grows).
	c := newPmap[string, int](func(string) uint32 { return 7 })
	for i := 0; i < 50; i++ {
		c = c.Set(fmt.Sprint(i), i)
	}
	for i := 0; i < 50; i += 2 {
		c = c.Delete(fmt.Sprint(i))
	}
	if c.Len() != 25 {
		t.Fatalf("len %d", c.Len())
	}
	if v, ok := c.Get("49"); !ok || v != 49 {
		t.Fatal("collision lookup")
	}
}

func TestTopicIDText(t *testing.T) {
	id := tid(0x01020304)
	back, err := ParseTopicID(id.String())
	if err != nil || back != id {
		t.Fatalf("%s -> %v %v", id, back, err)
	}
	if _, err := ParseTopicID("nope"); err == nil {
		t.Fatal("parsed nope")
	}
}

// ---- fuzzing ----

// FuzzApply feeds arbitrary bytes as a batch to an image with content: it
// must never panic, and a rejected batch must leave the state unchanged.
func FuzzApply(f *testing.F) {
	base := replayStream(f, stream(21, 60))
	for _, b := range stream(22, 30) {
		f.Add(batchBytes(f, b.Records...))
	}
	top := base.Topics()[0]
	p := top.Partition(0)
	f.Add(batchBytes(f, recISR(top.ID(), 0, p.LeaderEpoch, p.PartitionEpoch+1, p.Leader)))
	f.Add([]byte{0x0a, 0x00})
	before := base.String()
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := ApplyData(base, base.Offset()+1, data)
		if base.String() != before {
			t.Fatal("base image changed")
		}
		if img.Offset() != base.Offset()+1 {
			t.Fatalf("offset %d", img.Offset())
		}
		if err != nil {
			if img.ErrorCount() != base.ErrorCount()+1 {
				t.Fatal("error not recorded")
			}
			return
		}
		// An accepted batch gives an image that snapshots and restores.
		snap, err := img.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalSnapshot(snap)
		if err != nil {
			t.Fatalf("snapshot of an applied image does not restore: %v", err)
		}
		if back.String() != img.String() {
			t.Fatal("restore differs")
		}
	})
}

// FuzzUnmarshalSnapshot: arbitrary snapshot bytes never panic, and whatever
// restores snapshots and restores to the same image.
func FuzzUnmarshalSnapshot(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3} {
		data, err := replayStream(f, stream(seed, 40)).MarshalSnapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := UnmarshalSnapshot(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := img.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalSnapshot(again)
		if err != nil {
			t.Fatalf("re-snapshot does not restore: %v", err)
		}
		if back.String() != img.String() {
			t.Fatal("re-snapshot differs")
		}
	})
}
