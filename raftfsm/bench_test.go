package raftfsm

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

const (
	benchTopics     = 1000
	benchPartitions = 100 // per topic: 100,000 in all
	benchBrokers    = 12
)

// buildBenchImage builds 1000 topics x 100 partitions, RF 3, one batch per
// topic (as CreateTopics writes them).
func buildBenchImage(tb testing.TB) *Image {
	img := NewImage()
	var brokers []*stratav1.MetadataRecord
	for b := int32(0); b < benchBrokers; b++ {
		brokers = append(brokers, recBroker(b, 1))
	}
	img, err := ReplayRecords(img, 1, brokers)
	if err != nil {
		tb.Fatal(err)
	}
	for t := 0; t < benchTopics; t++ {
		id := tid(t)
		recs := make([]*stratav1.MetadataRecord, 0, benchPartitions+1)
		recs = append(recs, recTopic(fmt.Sprintf("topic-%04d", t), id))
		for p := int32(0); p < benchPartitions; p++ {
			r := (int32(t) + p) % benchBrokers
			recs = append(recs, recPartition(id, p, r, (r+1)%benchBrokers, (r+2)%benchBrokers))
		}
		if img, err = ReplayRecords(img, int64(t+2), recs); err != nil {
			tb.Fatal(err)
		}
	}
	return img
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

var (
	benchOnce sync.Once
	benchImg  *Image
	benchSnap []byte
)

func benchImage(b *testing.B) (*Image, []byte) {
	benchOnce.Do(func() {
		benchImg = buildBenchImage(b)
		var err error
		if benchSnap, err = benchImg.MarshalSnapshot(); err != nil {
			b.Fatal(err)
		}
	})
	return benchImg, benchSnap
}

// BenchmarkImage100kPartitions: heap per partition of an image of 100,000
// partitions (built by applying records, and restored from a snapshot),
// snapshot size and time, restore time.
func BenchmarkImage100kPartitions(b *testing.B) {
	const n = benchTopics * benchPartitions
	b.Run("build", func(b *testing.B) {
		var img *Image
		b.StopTimer()
		for i := 0; i < b.N; i++ {
			img = nil
			before := heapInUse()
			b.StartTimer()
			img = buildBenchImage(b)
			b.StopTimer()
			after := heapInUse()
			b.ReportMetric(float64(after-before)/n, "heap-B/partition")
		}
		if img.NumPartitions() != n {
			b.Fatalf("%d partitions", img.NumPartitions())
		}
		runtime.KeepAlive(img)
	})
	b.Run("snapshot", func(b *testing.B) {
		img, _ := benchImage(b)
		var data []byte
		for b.Loop() {
			var err error
			if data, err = img.MarshalSnapshot(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(data)), "snapshot-bytes")
		b.ReportMetric(float64(len(data))/n, "snapshot-B/partition")
	})
	b.Run("restore", func(b *testing.B) {
		_, data := benchImage(b)
		var img *Image
		b.StopTimer()
		for i := 0; i < b.N; i++ {
			img = nil
			before := heapInUse()
			b.StartTimer()
			var err error
			if img, err = UnmarshalSnapshot(data); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			after := heapInUse()
			b.ReportMetric(float64(after-before)/n, "heap-B/partition")
		}
		if img.NumPartitions() != n {
			b.Fatalf("%d partitions", img.NumPartitions())
		}
		runtime.KeepAlive(img)
	})
}

// BenchmarkApplyPartitionChange: one ISR change (one-record batch) on the
// 100,000-partition image: the copy-on-write cost of a typical AlterPartition.
func BenchmarkApplyPartitionChange(b *testing.B) {
	img, _ := benchImage(b)
	off := img.Offset()
	i := 0
	for b.Loop() {
		t := img.TopicByID(tid(i % benchTopics))
		pi := int32((i / benchTopics) % benchPartitions)
		p := t.Partition(pi)
		isr := p.Replicas
		if len(p.ISR) == len(p.Replicas) {
			isr = p.Replicas[:2]
		}
		off++
		next, err := ApplyRecord(img, off, recISR(t.ID(), pi, p.LeaderEpoch, p.PartitionEpoch+1, isr...))
		if err != nil {
			b.Fatal(err)
		}
		img = next
		i++
	}
}
