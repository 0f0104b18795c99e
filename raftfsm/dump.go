package raftfsm

import (
	"fmt"
	"io"
	"strings"
)

// Dump writes a stable, human-readable description of the image: one line per
// broker, topic, partition, config set, feature and remembered error, sorted.
// Tests compare dumps; operators read them (strata cluster / dump tools).
func (img *Image) Dump(w io.Writer) {
	fmt.Fprintf(w, "offset %d cluster %q next_producer_id %d errors %d\n",
		img.offset, img.clusterID, img.nextProducerID, img.errorCount)
	for _, b := range img.Brokers() {
		ls := make([]string, 0, len(b.Listeners))
		for _, l := range b.Listeners {
			ls = append(ls, l.Name+"="+l.Addr())
		}
		fmt.Fprintf(w, "broker %d epoch %d incarnation %x rack %q fenced %t shutdown %t listeners [%s]\n",
			b.ID, b.Epoch, b.IncarnationID, b.Rack, b.Fenced, b.InControlledShutdown, strings.Join(ls, " "))
	}
	for _, t := range img.Topics() {
		fmt.Fprintf(w, "topic %q id %s configs %s\n", t.name, t.id, dumpMap(t.configs))
		for i, p := range t.partitions {
			fmt.Fprintf(w, "  %d replicas %v isr %v leader %d leader_epoch %d partition_epoch %d",
				i, fmtIDs(p.Replicas), fmtIDs(p.ISR), p.Leader, p.LeaderEpoch, p.PartitionEpoch)
			if p.IsReassigning() {
				fmt.Fprintf(w, " adding %v removing %v", fmtIDs(p.Adding), fmtIDs(p.Removing))
			}
			fmt.Fprintln(w)
		}
	}
	for _, res := range sortedKeys(img.brokerConfigs) {
		fmt.Fprintf(w, "broker_config %q %s\n", res, dumpMap(img.brokerConfigs[res]))
	}
	for _, name := range sortedKeys(img.features) {
		fmt.Fprintf(w, "feature %s=%d\n", name, img.features[name])
	}
	for _, e := range img.recentErrors {
		fmt.Fprintf(w, "error @%d: %s\n", e.Offset, e.Message)
	}
}

// String is Dump as a string.
func (img *Image) String() string {
	var sb strings.Builder
	img.Dump(&sb)
	return sb.String()
}

func dumpMap(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func fmtIDs(ids []int32) string {
	if len(ids) == 0 {
		return "[]"
	}
	return fmt.Sprint(ids)
}
