package client

import "testing"

// TestMurmur2KafkaVectors pins murmur2 to Kafka's own expected hashes, from
// UtilsTest.testMurmur2 in Apache Kafka
// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
// A mismatch would place keyed records on other partitions than Kafka's
// clients do.
func TestMurmur2KafkaVectors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := murmur2([]byte(c.in)); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestToPositive(t *testing.T) {
	for in, want := range map[int32]int32{0: 0, 5: 5, -1: 0x7fffffff, -2147483648: 0, 2147483647: 2147483647} {
		if got := toPositive(in); got != want {
			t.Errorf("toPositive(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestKeyPartition(t *testing.T) {
	// toPositive(-973932308) = 1173551340; % 7 = 1173551340 - 7*167650191.
	if got, want := KeyPartition([]byte("21"), 7), int32(1173551340%7); got != want {
		t.Fatalf("KeyPartition(21, 7) = %d, want %d", got, want)
	}
	// An empty key is a key (murmur2 of nothing), not "no key".
	if got := DefaultPartitioner().Partition("t", []byte{}, 10); got != KeyPartition(nil, 10) {
		t.Fatalf("empty key: %d", got)
	}
}

func FuzzMurmur2InRange(f *testing.F) {
	f.Add([]byte("21"), 3)
	f.Fuzz(func(t *testing.T, key []byte, n int) {
		if n <= 0 || n > 1<<20 {
			return
		}
		if p := KeyPartition(key, n); p < 0 || int(p) >= n {
			t.Fatalf("KeyPartition = %d of %d", p, n)
		}
	})
}
