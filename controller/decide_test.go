package controller

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Data-driven tests of the decisions, in the style of etcd's raft: each file
// in testdata/ is a sequence of blocks
//
//	command args...
//	(input lines)
//	----
//	expected output
//
// separated by blank lines. The image carries over from block to block: a
// decision's records are applied before the next block. Run with -rewrite to
// regenerate the expected outputs (then read the diff).
//
// Commands:
//
//	broker ID [rack=R] [fenced] [shutdown]      register a broker (unfenced unless fenced)
//	topic NAME [unclean] [id=N]                 create a topic; one input line per partition:
//	  REPLICAS [isr=L] [leader=N] [adding=L] [removing=L]   (lists are comma-separated)
//	register ID [rack=R]                        RegisterBroker decision (a new incarnation)
//	fence ID | unfence ID | shutdown ID         broker lifecycle decisions
//	place COUNT RF                              placement only (nothing applied)
//	create NAME PARTITIONS RF [key=value...]    CreateTopics decision
//	grow NAME COUNT                             CreatePartitions decision
//	alter-isr TOPIC PART BROKER ISR             AlterPartition with the current epochs
//	elect TOPIC PART preferred|unclean          ElectLeaders decision
//	reassign TOPIC PART [REPLICAS]              reassignment (none: cancel)
//	show TOPIC                                  print the topic's partitions
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs in testdata/")

func TestDecisionsDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runDataDriven(t, f) })
	}
}

type ddBlock struct {
	comments []string // blank and # lines before the command
	cmd      string
	input    []string
	output   []string
	line     int
}

func parseDD(t *testing.T, path string) []*ddBlock {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*ddBlock
	var cur *ddBlock
	var comments []string
	inOutput := false
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && (strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#")):
			if strings.HasPrefix(line, "#") {
				comments = append(comments, line)
			}
		case cur == nil:
			cur = &ddBlock{cmd: line, line: n, comments: comments}
			comments = nil
			inOutput = false
		case !inOutput && line == "----":
			inOutput = true
		case !inOutput:
			cur.input = append(cur.input, line)
		case strings.TrimSpace(line) == "":
			blocks = append(blocks, cur)
			cur = nil
		default:
			cur.output = append(cur.output, line)
		}
	}
	if cur != nil {
		blocks = append(blocks, cur)
	}
	return blocks
}

func runDataDriven(t *testing.T, path string) {
	blocks := parseDD(t, path)
	img := raftfsm.NewImage()
	var out strings.Builder
	failed := false
	for _, b := range blocks {
		got, next := ddRun(t, img, b)
		img = next
		if !*rewrite && strings.Join(got, "\n") != strings.Join(b.output, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, b.line, b.cmd, strings.Join(got, "\n"), strings.Join(b.output, "\n"))
			failed = true
		}
		for _, c := range b.comments {
			fmt.Fprintln(&out, c)
		}
		fmt.Fprintln(&out, b.cmd)
		for _, l := range b.input {
			fmt.Fprintln(&out, l)
		}
		fmt.Fprintln(&out, "----")
		for _, l := range got {
			fmt.Fprintln(&out, l)
		}
		fmt.Fprintln(&out)
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = failed
}

func ddTopicID(name string) raftfsm.TopicID {
	sum := sha256.Sum256([]byte(name))
	var id raftfsm.TopicID
	copy(id[:], sum[:16])
	return id
}

func ddList(s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			panic(err)
		}
		out = append(out, int32(n))
	}
	return out
}

func ddArgs(fields []string) (pos []string, kv map[string]string) {
	kv = map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	return pos, kv
}

func ddAtoi(s string) int32 {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return int32(n)
}

// ddRun runs one block and returns its output and the image after it.
func ddRun(t *testing.T, img *raftfsm.Image, b *ddBlock) ([]string, *raftfsm.Image) {
	fields := strings.Fields(b.cmd)
	pos, kv := ddArgs(fields[1:])
	tx := newTxn(img)
	var err error
	var extra []string
	switch fields[0] {
	case "broker":
		id := ddAtoi(pos[0])
		inc := make([]byte, 16)
		inc[0], inc[15] = 1, byte(id)
		old := tx.img.Broker(id)
		epoch := int64(1)
		if old != nil {
			epoch = old.Epoch + 1
		}
		err = tx.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_RegisterBroker{RegisterBroker: &pb.RegisterBrokerRecord{
			BrokerId: id, IncarnationId: inc, BrokerEpoch: epoch, Rack: kv["rack"], Fenced: true}}})
		if err == nil && !slicesContains(pos, "fenced") {
			err = tx.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_UnfenceBroker{UnfenceBroker: &pb.UnfenceBrokerRecord{BrokerId: id, BrokerEpoch: epoch}}})
		}
		if err == nil && slicesContains(pos, "shutdown") {
			yes := true
			err = tx.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_BrokerRegistrationChange{BrokerRegistrationChange: &pb.BrokerRegistrationChangeRecord{
				BrokerId: id, BrokerEpoch: epoch, InControlledShutdown: &yes}}})
		}
		return ddResult(tx, img, err, true, nil, false)
	case "topic":
		name := pos[0]
		cfg := map[string]string{}
		if slicesContains(pos, "unclean") {
			cfg["unclean.leader.election.enable"] = "true"
		}
		id := ddTopicID(name)
		err = tx.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_Topic{Topic: &pb.TopicRecord{Name: name, TopicId: id.Bytes(), Configs: cfg}}})
		for i, l := range b.input {
			if err != nil {
				break
			}
			lp, lkv := ddArgs(strings.Fields(l))
			s := pstate{Replicas: ddList(lp[0])}
			s.ISR = s.Replicas
			if v, ok := lkv["isr"]; ok {
				s.ISR = ddList(v)
			}
			s.Leader = raftfsm.NoLeader
			if len(s.ISR) > 0 {
				s.Leader = s.ISR[0]
			}
			if v, ok := lkv["leader"]; ok {
				s.Leader = ddAtoi(v)
			}
			s.Adding, s.Removing = ddList(lkv["adding"]), ddList(lkv["removing"])
			err = tx.add(partitionRecord(id, int32(i), s))
		}
		return ddResult(tx, img, err, true, nil, false)
	case "register":
		id := ddAtoi(pos[0])
		inc := make([]byte, 16)
		inc[0], inc[1], inc[15] = 2, 2, byte(id) // another incarnation than "broker"'s
		epoch := int64(1)
		if old := tx.img.Broker(id); old != nil {
			epoch = old.Epoch + 1
		}
		err = decideRegister(tx, &pb.RegisterBrokerRequest{BrokerId: id, IncarnationId: inc, Rack: kv["rack"]}, epoch)
	case "fence":
		err = decideFence(tx, ddAtoi(pos[0]))
	case "unfence":
		err = decideUnfence(tx, ddAtoi(pos[0]))
	case "shutdown":
		err = decideControlledShutdown(tx, ddAtoi(pos[0]))
	case "place":
		as, err := placeReplicas(img, ddAtoi(pos[0]), ddAtoi(pos[1]))
		if err != nil {
			return []string{"error: " + ErrorCode(err).String()}, img
		}
		var out []string
		for i, a := range as {
			out = append(out, fmt.Sprintf("%d: %v", i, a))
		}
		return out, img
	case "create":
		delete(kv, "")
		_, err = decideCreateTopic(tx, &pb.CreatableTopic{Name: pos[0], NumPartitions: ddAtoi(pos[1]), ReplicationFactor: ddAtoi(pos[2]), Configs: kv}, ddTopicID(pos[0]))
	case "grow":
		err = decideCreatePartitions(tx, &pb.CreatePartitionsTopic{Name: pos[0], Count: ddAtoi(pos[1])})
	case "alter-isr":
		tp := img.Topic(pos[0])
		p := tp.Partition(ddAtoi(pos[1]))
		var members []*pb.IsrMember
		for _, id := range ddList(pos[3]) {
			members = append(members, &pb.IsrMember{BrokerId: id, BrokerEpoch: -1})
		}
		err = decideAlterPartition(tx, ddAtoi(pos[2]), tp.ID(), &pb.AlterPartitionPartition{
			Partition: ddAtoi(pos[1]), LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, NewIsr: members})
	case "elect":
		typ := pb.ElectionType_ELECTION_TYPE_PREFERRED
		if pos[2] == "unclean" {
			typ = pb.ElectionType_ELECTION_TYPE_UNCLEAN
		}
		var leader int32
		leader, err = decideElectLeader(tx, img.Topic(pos[0]), ddAtoi(pos[1]), typ)
		extra = append(extra, fmt.Sprintf("leader: %d", leader))
	case "reassign":
		var target []int32
		if len(pos) > 2 {
			target = ddList(pos[2])
		}
		err = decideReassign(tx, img.Topic(pos[0]), ddAtoi(pos[1]), target)
	case "show":
		tp := img.Topic(pos[0])
		var out []string
		for i, p := range tp.Partitions() {
			out = append(out, fmt.Sprintf("%s-%d %s le=%d pe=%d", tp.Name(), i, stateOf(p), p.LeaderEpoch, p.PartitionEpoch))
		}
		return out, img
	default:
		t.Fatalf("line %d: unknown command %q", b.line, fields[0])
	}
	return ddResult(tx, img, err, false, extra, true)
}

// ddResult prints the txn's records (or "ok" for setup commands) and the
// error, and returns the image to carry on with.
func ddResult(tx *txn, img *raftfsm.Image, err error, setup bool, extra []string, print bool) ([]string, *raftfsm.Image) {
	if err != nil {
		return append(extra, "error: "+ErrorCode(err).String()), img
	}
	if setup {
		return []string{"ok"}, tx.img
	}
	var out []string
	out = append(out, extra...)
	for _, r := range tx.recs {
		out = append(out, fmtRecord(tx.img, r))
	}
	if len(tx.recs) == 0 {
		out = append(out, "(no records)")
	}
	return out, tx.img
}

func fmtRecord(img *raftfsm.Image, r *pb.MetadataRecord) string {
	topic := func(id []byte) string {
		tid, _ := raftfsm.TopicIDFromBytes(id)
		if tp := img.TopicByID(tid); tp != nil {
			return tp.Name()
		}
		return tid.String()
	}
	list := func(l *pb.Int32List) string { return fmt.Sprint(l.GetValues()) }
	switch x := r.Record.(type) {
	case *pb.MetadataRecord_RegisterBroker:
		x2 := x.RegisterBroker
		return fmt.Sprintf("register-broker %d epoch=%d rack=%q fenced=%v", x2.GetBrokerId(), x2.GetBrokerEpoch(), x2.GetRack(), x2.GetFenced())
	case *pb.MetadataRecord_FenceBroker:
		return fmt.Sprintf("fence-broker %d", x.FenceBroker.GetBrokerId())
	case *pb.MetadataRecord_UnfenceBroker:
		return fmt.Sprintf("unfence-broker %d", x.UnfenceBroker.GetBrokerId())
	case *pb.MetadataRecord_BrokerRegistrationChange:
		return fmt.Sprintf("broker-change %d shutdown=%v", x.BrokerRegistrationChange.GetBrokerId(), x.BrokerRegistrationChange.GetInControlledShutdown())
	case *pb.MetadataRecord_Topic:
		return fmt.Sprintf("topic %s configs=%v", x.Topic.GetName(), x.Topic.GetConfigs())
	case *pb.MetadataRecord_Partition:
		p := x.Partition
		return fmt.Sprintf("partition %s-%d replicas=%v isr=%v leader=%d", topic(p.GetTopicId()), p.GetPartition(), p.GetReplicas(), p.GetIsr(), p.GetLeader())
	case *pb.MetadataRecord_PartitionChange:
		p := x.PartitionChange
		var b strings.Builder
		fmt.Fprintf(&b, "change %s-%d", topic(p.GetTopicId()), p.GetPartition())
		if p.Leader != nil {
			fmt.Fprintf(&b, " leader=%d", p.GetLeader())
		}
		if p.Isr != nil {
			fmt.Fprintf(&b, " isr=%s", list(p.Isr))
		}
		if p.Replicas != nil {
			fmt.Fprintf(&b, " replicas=%s", list(p.Replicas))
		}
		if p.AddingReplicas != nil {
			fmt.Fprintf(&b, " adding=%s", list(p.AddingReplicas))
		}
		if p.RemovingReplicas != nil {
			fmt.Fprintf(&b, " removing=%s", list(p.RemovingReplicas))
		}
		fmt.Fprintf(&b, " le=%d pe=%d", p.GetLeaderEpoch(), p.GetPartitionEpoch())
		return b.String()
	}
	return raftfsm.RecordKind(r)
}

func slicesContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
