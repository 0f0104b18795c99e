package client

import "encoding/binary"

// murmur2 is the 32-bit MurmurHash2 that Kafka's Java client uses to place
// keyed records (org.apache.kafka.common.utils.Utils.murmur2): seed
// 0x9747b28c, the body read as little-endian 32-bit words, and the 1-3
// trailing bytes mixed in the reference order. Its output must never change:
// records with the same key land on the same partition whichever client
// (Java, librdkafka in its murmur2 mode, franz-go, Strata) wrote them.
func murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c // part of the placement contract: do not change
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	for len(data) >= 4 {
		k := binary.LittleEndian.Uint32(data)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// toPositive is Kafka's Utils.toPositive: the sign bit cleared (not the
// absolute value, so math.MinInt32 maps to 0, not to itself).
func toPositive(x int32) int32 { return x & 0x7fffffff }

// KeyPartition is the partition Kafka's default partitioner gives a keyed
// record: toPositive(murmur2(key)) % numPartitions.
func KeyPartition(key []byte, numPartitions int) int32 {
	return toPositive(murmur2(key)) % int32(numPartitions)
}
