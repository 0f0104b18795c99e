package raftfsm

import (
	"testing"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

func TestSmoke(t *testing.T) {
	id := TopicID{1}
	img, err := ReplayRecords(NewImage(), 1, []*stratav1.MetadataRecord{
		{Record: &stratav1.MetadataRecord_Topic{Topic: &stratav1.TopicRecord{Name: "a", TopicId: id.Bytes()}}},
		{Record: &stratav1.MetadataRecord_Partition{Partition: &stratav1.PartitionRecord{TopicId: id.Bytes(), Replicas: []int32{1, 2}, Isr: []int32{1, 2}, Leader: 1}}},
	})
	if err != nil || img.Topic("a").NumPartitions() != 1 {
		t.Fatal(err)
	}
}
