package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/client"
)

// TestClusterElectReassignCommands runs cluster describe, elect-leaders and
// the reassign workflow against one three-broker cluster.
func TestClusterElectReassignCommands(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	bs := strings.Join(c.Bootstrap(), ",")
	dir := t.TempDir()
	writeFile := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("ClusterDescribe", func(t *testing.T) {
		var d clusterDescription
		decodeJSON(t, wantRun(t, bs, 0, nil, "cluster", "describe", "--output", "json"), &d)
		if d.ClusterID == "" || d.ControllerID < 0 || len(d.Brokers) != 3 || d.Quorum.LeaderID != d.ControllerID || len(d.Quorum.Voters) != 1 {
			t.Fatalf("cluster describe: %+v", d)
		}
		for i, b := range d.Brokers {
			if b.ID != int32(101+i) || b.Address != c.Addr(b.ID) || b.Epoch <= 0 || b.Fenced {
				t.Errorf("broker %+v", b)
			}
		}
		if v := d.Quorum.Voters[0]; !v.Leader || v.Lag != 0 || v.Suffrage != "voter" {
			t.Errorf("voter %+v", v)
		}
		out := wantRun(t, bs, 0, nil, "cluster", "describe")
		for _, w := range []string{"BROKER", "101", c.Addr(102), "active", "Controller quorum: leader", "VOTER", "leader"} {
			if !strings.Contains(out, w) {
				t.Errorf("cluster describe lacks %q:\n%s", w, out)
			}
		}
		wantRun(t, bs, 2, []string{"name a subcommand"}, "cluster")
	})

	c.CreateTopic("moves", 3, 1, nil)
	c.CreateTopic("pairs", 2, 2, nil)

	t.Run("ElectLeaders", func(t *testing.T) {
		wantRun(t, bs, 2, []string{"exactly one of --preferred or --unclean"}, "elect-leaders")
		wantRun(t, bs, 2, []string{"exactly one of"}, "elect-leaders", "--preferred", "--unclean")
		wantRun(t, bs, 2, []string{"--partition needs --topic"}, "elect-leaders", "--preferred", "--partition", "1")
		wantRun(t, bs, 1, []string{`"nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}, "elect-leaders", "--preferred", "--topic", "nope")
		if out := wantRun(t, bs, 0, nil, "elect-leaders", "--preferred"); !strings.Contains(out, "No partition needs an election.") {
			t.Errorf("elect all: %q", out)
		}
		if out := wantRun(t, bs, 0, nil, "elect-leaders", "--unclean"); !strings.Contains(out, "No partition needs an election.") {
			t.Errorf("unclean, nothing leaderless: %q", out)
		}
		var res struct {
			Results []electionOutcome `json:"results"`
		}
		decodeJSON(t, wantRun(t, bs, 0, nil, "elect-leaders", "--preferred", "--topic", "pairs", "--output", "json"), &res)
		if len(res.Results) != 2 || res.Results[0].Result != "not_needed" || res.Results[1].Partition != 1 || res.Results[0].Leader < 0 {
			t.Errorf("elect pairs: %+v", res)
		}
		decodeJSON(t, wantRun(t, bs, 1, []string{"pairs-7", "UNKNOWN_TOPIC_OR_PARTITION"}, "elect-leaders", "--preferred", "--topic", "pairs", "--partition", "7", "--output", "json"), &res)
		if len(res.Results) != 1 || res.Results[0].Result != "failed" || res.Results[0].Error == "" {
			t.Errorf("elect pairs-7: %+v", res)
		}
	})

	t.Run("Reassign", func(t *testing.T) {
		// generate: bad usage first.
		wantRun(t, bs, 2, []string{"--topics is required"}, "reassign", "generate", "--brokers", "101")
		wantRun(t, bs, 2, []string{"--brokers is required"}, "reassign", "generate", "--topics", "moves")
		wantRun(t, bs, 2, []string{"broker 7 is not registered"}, "reassign", "generate", "--topics", "moves", "--brokers", "101,7")
		wantRun(t, bs, 2, []string{"pairs-0 has 2 replicas", "at least 2 brokers"}, "reassign", "generate", "--topics", "pairs", "--brokers", "101")
		wantRun(t, bs, 1, []string{`"nope"`}, "reassign", "generate", "--topics", "nope", "--brokers", "101")

		out := wantRun(t, bs, 0, nil, "reassign", "generate", "--topics", "moves", "--brokers", "102,103")
		p, err := parsePlan("generated", []byte(out))
		if err != nil {
			t.Fatalf("generated plan: %v\n%s", err, out)
		}
		if len(p.Partitions) != 3 {
			t.Fatalf("plan: %+v", p)
		}
		for i, pp := range p.Partitions {
			if want := []int32{[]int32{102, 103}[i%2]}; pp.Topic != "moves" || pp.Partition != int32(i) || !slices.Equal(pp.Replicas, want) {
				t.Errorf("plan partition %+v, want replicas %v", pp, want)
			}
		}
		plan := writeFile("plan.json", out)

		// execute: bad plans and --throttle are bad usage.
		wantRun(t, bs, 2, []string{"--plan FILE is required"}, "reassign", "execute")
		wantRun(t, bs, 2, []string{"no such file"}, "reassign", "execute", "--plan", filepath.Join(dir, "missing.json"))
		wantRun(t, bs, 2, []string{"not valid JSON"}, "reassign", "execute", "--plan", writeFile("bad.json", "{"))
		wantRun(t, bs, 2, []string{"names no partitions"}, "reassign", "execute", "--plan", writeFile("empty.json", `{"version":1,"partitions":[]}`))
		wantRun(t, bs, 2, []string{"version 2"}, "reassign", "execute", "--plan", writeFile("v2.json", `{"version":2,"partitions":[{"topic":"moves","partition":0,"replicas":[101]}]}`))
		wantRun(t, bs, 2, []string{"broker 101 is named twice"}, "reassign", "verify", "--plan", writeFile("dup.json", `{"version":1,"partitions":[{"topic":"moves","partition":0,"replicas":[101,101]}]}`))
		wantRun(t, bs, 2, []string{"has no \"replicas\""}, "reassign", "cancel", "--plan", writeFile("norep.json", `{"version":1,"partitions":[{"topic":"moves","partition":0}]}`))
		wantRun(t, bs, 2, []string{"--throttle must be a positive number"}, "reassign", "execute", "--plan", plan, "--throttle", "0")
		wantRun(t, bs, 2, []string{"--throttle must be a positive number"}, "reassign", "execute", "--plan", plan, "--throttle", "-5")

		var ex struct {
			Current *reassignPlan     `json:"current"`
			Results []reassignOutcome `json:"results"`
		}
		decodeJSON(t, wantRun(t, bs, 0, nil, "reassign", "execute", "--plan", plan, "--output", "json"), &ex)
		if len(ex.Results) != 3 || ex.Results[0].Result != "started" || len(ex.Current.Partitions) != 3 {
			t.Fatalf("execute: %+v", ex)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, msg, code := adminRun(t, bs, "reassign", "verify", "--plan", plan, "--output", "json")
			var v struct {
				Done       bool            `json:"done"`
				Partitions []reassignState `json:"partitions"`
			}
			decodeJSON(t, out, &v)
			if code == 0 {
				if !v.Done || v.Partitions[0].State != stateDone {
					t.Fatalf("verify exit 0 but %+v", v)
				}
				break
			}
			if code != 1 || !strings.Contains(msg, "not done") || time.Now().After(deadline) {
				t.Fatalf("verify: exit %d %s %+v", code, msg, v)
			}
			for _, s := range v.Partitions {
				if s.State == stateFailed {
					t.Fatalf("verify: %+v", s)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out := wantRun(t, bs, 0, nil, "reassign", "verify", "--plan", plan); !strings.Contains(out, "done") {
			t.Errorf("verify table: %q", out)
		}
		var cancel struct {
			Results []reassignOutcome `json:"results"`
		}
		decodeJSON(t, wantRun(t, bs, 0, nil, "reassign", "cancel", "--plan", plan, "--output", "json"), &cancel)
		if len(cancel.Results) != 3 || cancel.Results[0].Result != "not_in_progress" {
			t.Errorf("cancel: %+v", cancel)
		}

		// A plan naming an unknown topic: execute refuses it (exit 1),
		// verify reports it failed (exit 1).
		unknown := writeFile("unknown.json", `{"version":1,"partitions":[{"topic":"nope","partition":0,"replicas":[101]},{"topic":"moves","partition":0,"replicas":[102]}]}`)
		wantRun(t, bs, 1, []string{"nope-0", "UNKNOWN_TOPIC_OR_PARTITION"}, "reassign", "execute", "--plan", unknown)
		var v struct {
			Done       bool            `json:"done"`
			Partitions []reassignState `json:"partitions"`
		}
		decodeJSON(t, wantRun(t, bs, 1, []string{"1 of 2 partitions done", "1 failed"}, "reassign", "verify", "--plan", unknown, "--output", "json"), &v)
		if v.Done || v.Partitions[0].State != stateFailed || v.Partitions[1].State != stateDone {
			t.Errorf("verify unknown: %+v", v)
		}
	})

	t.Run("ReassignInProgressAndCancel", func(t *testing.T) {
		// Adding a replica on a dead broker keeps the reassignment in progress.
		c.Kill(103)
		plan := writeFile("stuck.json", `{"version":1,"partitions":[{"topic":"pairs","partition":0,"replicas":[101,102,103]}]}`)
		ds := describeOne(t, bs, "pairs")
		orig := ds.Partitions[0].Replicas
		if slices.Contains(orig, 103) {
			plan = writeFile("stuck.json", `{"version":1,"partitions":[{"topic":"pairs","partition":1,"replicas":[101,102,103]}]}`)
			orig = ds.Partitions[1].Replicas
		}
		if slices.Contains(orig, 103) {
			t.Skipf("both partitions of pairs are on 103: %+v", ds.Partitions)
		}
		wantRun(t, bs, 0, nil, "reassign", "execute", "--plan", plan)
		var v struct {
			Partitions []reassignState `json:"partitions"`
		}
		decodeJSON(t, wantRun(t, bs, 1, []string{"0 of 1 partitions done", "1 in progress"}, "reassign", "verify", "--plan", plan, "--output", "json"), &v)
		if s := v.Partitions[0]; s.State != stateInProgress || !slices.Equal(s.Adding, []int32{103}) {
			t.Fatalf("verify in progress: %+v", s)
		}
		var cancel struct {
			Results []reassignOutcome `json:"results"`
		}
		decodeJSON(t, wantRun(t, bs, 0, nil, "reassign", "cancel", "--plan", plan, "--output", "json"), &cancel)
		if cancel.Results[0].Result != "cancelled" {
			t.Fatalf("cancel: %+v", cancel)
		}
		deadline := time.Now().Add(10 * time.Second)
		for p := v.Partitions[0].Partition; slices.Contains(describeOne(t, bs, "pairs").Partitions[p].Replicas, 103); { // the brokers' metadata trails
			if time.Now().After(deadline) {
				t.Fatal("103 still a replica after the cancel")
			}
			time.Sleep(20 * time.Millisecond)
		}
		decodeJSON(t, wantRun(t, bs, 1, []string{"1 failed"}, "reassign", "verify", "--plan", plan, "--output", "json"), &v)
		if s := v.Partitions[0]; s.State != stateFailed || !slices.Equal(s.Replicas, orig) {
			t.Errorf("verify after cancel: %+v (original replicas %v)", s, orig)
		}
	})
}

func describeOne(t *testing.T, bs, topic string) topicDescription {
	t.Helper()
	var desc struct {
		Topics []topicDescription `json:"topics"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "describe", topic, "--output", "json"), &desc)
	return desc.Topics[0]
}

// TestGeneratePlan: Kafka's round robin — leaders spread evenly, no broker
// twice in a partition, followers shift every n partitions, and the start
// rotates from topic to topic.
func TestGeneratePlan(t *testing.T) {
	mk := func(name string, parts, rf int) client.TopicDescription {
		d := client.TopicDescription{Name: name}
		for i := range parts {
			d.Partitions = append(d.Partitions, client.PartitionInfo{Topic: name, Partition: int32(i), Replicas: make([]int32, rf)})
		}
		return d
	}
	brokers := []int32{1, 2, 3, 4}
	p, err := generatePlan([]client.TopicDescription{mk("a", 8, 3), mk("b", 4, 2)}, brokers)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for _, pp := range p.Partitions {
		if pp.Topic != "a" {
			continue
		}
		leaders[pp.Replicas[0]]++
		for j, r := range pp.Replicas {
			if slices.Contains(pp.Replicas[:j], r) {
				t.Errorf("%+v: broker %d twice", pp, r)
			}
		}
	}
	for _, b := range brokers {
		if leaders[b] != 2 {
			t.Errorf("leaders per broker: %v", leaders)
		}
	}
	// Kafka's layout with start 0, shift 0: partition 0 -> 1,2,3; 4 (second round, shift 1) -> 1,3,4.
	if got := p.Partitions[0].Replicas; !slices.Equal(got, []int32{1, 2, 3}) {
		t.Errorf("a-0: %v", got)
	}
	if got := p.Partitions[4].Replicas; !slices.Equal(got, []int32{1, 3, 4}) {
		t.Errorf("a-4: %v", got)
	}
	// Topic b starts one broker further.
	if got := p.Partitions[8].Replicas; p.Partitions[8].Topic != "b" || got[0] != 2 {
		t.Errorf("b-0: %v", got)
	}
	if _, err := generatePlan([]client.TopicDescription{mk("a", 1, 5)}, brokers); err == nil || exitCode(err) != 2 {
		t.Errorf("rf above the brokers: %v", err)
	}
}

// TestReassignThrottle: execute --throttle sets the replication throttle on
// the plan's brokers, which apply it at once: moving 3 MB at 1 MB/s takes
// seconds where it takes a moment without. verify removes it once the move
// is done, and the brokers go back to no throttle.
func TestReassignThrottle(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	bs := strings.Join(c.Bootstrap(), ",")
	c.CreateTopic("slow", 1, 1, nil)
	leader := describeOne(t, bs, "slow").Partitions[0].Replicas[0]
	var target []int32
	for _, id := range c.IDs() {
		if id != leader {
			target = append(target, id)
		}
	}
	// 3 MB: 96 batches of 32 records of 1 KiB.
	cl, err := client.New(client.Config{Bootstrap: c.Bootstrap()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p, err := client.NewProducer(cl, client.ProducerConfig{BatchSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	val := make([]byte, 1024)
	var futs []*client.Future
	for range 3 << 10 {
		futs = append(futs, p.Send(ctx, &client.Record{Topic: "slow", Partition: 0, Value: val}))
	}
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Close(ctx)

	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	body := fmt.Sprintf(`{"version":1,"partitions":[{"topic":"slow","partition":0,"replicas":[%d,%d]}]}`, target[0], target[1])
	if err := os.WriteFile(plan, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	const rate = 1 << 20
	start := time.Now()
	var ex struct {
		Throttle *throttleSetting `json:"throttle"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "reassign", "execute", "--plan", plan, "--throttle", fmt.Sprint(rate), "--output", "json"), &ex)
	if ex.Throttle == nil || ex.Throttle.BytesPerSec != rate || !slices.Equal(ex.Throttle.Brokers, target) {
		t.Fatalf("execute: throttle %+v, want %d on %v", ex.Throttle, rate, target)
	}
	// Every broker of the plan applies it (the others do not).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ok := true
		for _, id := range c.IDs() {
			want := int64(0)
			if slices.Contains(target, id) {
				want = rate
			}
			ok = ok && c.Broker(id).ReplicationThrottle() == want
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the brokers did not apply the throttle")
		}
	}
	var v struct {
		Done            bool    `json:"done"`
		ThrottleRemoved []int32 `json:"throttle_removed"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, msg, code := adminRun(t, bs, "reassign", "verify", "--plan", plan, "--output", "json")
		decodeJSON(t, out, &v)
		if code == 0 {
			break
		}
		if code != 1 || len(v.ThrottleRemoved) != 0 || time.Now().After(deadline) {
			t.Fatalf("verify: exit %d %s %+v", code, msg, v)
		}
	}
	took := time.Since(start)
	// 3 MiB at 1 MiB/s with a burst of 0.75 s worth: over 2 s (unthrottled
	// it takes well under a second on loopback).
	if took < 2*time.Second {
		t.Fatalf("3 MiB moved in %v under a 1 MiB/s throttle", took)
	}
	if !v.Done || !slices.Equal(v.ThrottleRemoved, target) {
		t.Fatalf("verify when done: %+v, want the throttle removed from %v", v, target)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ok := true
		for _, id := range c.IDs() {
			ok = ok && c.Broker(id).ReplicationThrottle() == 0
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the brokers kept the throttle after verify removed it")
		}
	}
	// Verified again: nothing left to remove.
	decodeJSON(t, wantRun(t, bs, 0, nil, "reassign", "verify", "--plan", plan, "--output", "json"), &v)
	if len(v.ThrottleRemoved) != 0 {
		t.Fatalf("second verify removed %v", v.ThrottleRemoved)
	}
	t.Logf("3 MiB moved in %v at 1 MiB/s", took)
}
