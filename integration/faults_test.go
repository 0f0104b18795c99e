package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/integration/checker"
	"github.com/stratalog/strata/integration/cluster"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The fault suite: each scenario runs a real cluster of processes, a
// workload of unique acks=all values into an RF=3, min.insync.replicas=2
// topic, a nemesis, then reads everything back twice and checks
// (integration/checker). `make test` runs the short versions; STRATA_LONG=1
// (make test-long) runs each for minutes with more faults.

// long reports whether the long versions run.
func long() bool { return os.Getenv("STRATA_LONG") != "" }

// span is how long a scenario's nemesis keeps at it.
func span() time.Duration {
	if long() {
		return 2 * time.Minute
	}
	return 12 * time.Second
}

const jepsenTopic = "jepsen"

// run is one scenario under way.
type run struct {
	t          *testing.T
	c          *cluster.Cluster
	nem        *cluster.Nemesis
	admin      *client.Admin
	w          *checker.Workload
	partitions int32
	extra      []checker.Op // ops outside the workload (probes)
}

type scenario struct {
	name       string
	cfg        cluster.Config
	partitions int32
	// assignments places the jepsen topic's replicas (nil: the controller
	// places them).
	assignments [][]int32
	nemesis     func(ctx context.Context, r *run) error
}

func separate() cluster.Config  { return cluster.Config{Controllers: 3, Brokers: 3} }
func combined3() cluster.Config { return cluster.Config{Combined: 3} }

func runScenario(t *testing.T, sc scenario) {
	if testing.Short() {
		t.Skip("fault suite: not in -short")
	}
	sc.cfg.Binary = strataBin
	if sc.partitions == 0 {
		sc.partitions = 3
	}
	row := checker.Row{Scenario: sc.name}
	defer func() {
		if t.Failed() && row.Err == "" && (row.Result == nil || row.Result.OK()) {
			row.Err = "see the test log"
		}
		checker.Record(row)
	}()
	c := cluster.New(t, sc.cfg)
	r := &run{t: t, c: c, nem: c.Nemesis(t.Logf), partitions: sc.partitions}
	ctx, cancel := context.WithTimeout(context.Background(), span()+4*time.Minute)
	defer cancel()

	cl := c.Client(client.Config{RequestTimeout: 5 * time.Second, MetadataMaxAge: time.Second})
	r.admin = client.NewAdmin(cl)
	nt := client.NewTopic{Name: jepsenTopic, Configs: map[string]string{"min.insync.replicas": "2"}}
	if sc.assignments != nil {
		nt.Assignments = sc.assignments
	} else {
		nt.Partitions, nt.ReplicationFactor = sc.partitions, 3
	}
	if err := createTopic(ctx, r.admin, nt); err != nil {
		row.Err = "create topic"
		t.Fatal(err)
	}
	if err := waitFullISR(ctx, c, jepsenTopic, sc.partitions, 30*time.Second); err != nil {
		row.Err = "topic never fully replicated"
		t.Fatal(err)
	}
	prod, err := client.NewProducer(cl, client.ProducerConfig{Acks: client.AcksAll, Linger: 2 * time.Millisecond,
		RequestTimeout: 5 * time.Second, DeliveryTimeout: 40 * time.Second, MaxBlock: 40 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	monCl := c.Client(client.Config{RequestTimeout: 2 * time.Second, MetadataMaxAge: time.Second})
	mon := checker.StartHWMonitor(client.NewAdmin(monCl), jepsenTopic, sc.partitions, 50*time.Millisecond)
	r.w = checker.StartWorkload(prod, checker.WorkloadConfig{Topic: jepsenTopic, Partitions: sc.partitions})
	if err := r.w.WaitAcked(ctx, 100); err != nil {
		row.Err = "no progress before faults"
		t.Fatal(err)
	}

	nemErr := sc.nemesis(ctx, r)

	// Heal, bring every node back, and require progress again.
	r.nem.Heal()
	for _, n := range c.Nodes() {
		if n.Paused() {
			r.nem.Resume(n)
		}
		if !n.Running() {
			if err := n.Start(); err != nil {
				t.Error(err)
			}
		}
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	if err := c.WaitReady(readyCtx, c.Nodes()...); err != nil {
		t.Errorf("after healing: %v", err)
	}
	readyCancel()
	progress, progressCancel := context.WithTimeout(ctx, 40*time.Second)
	if err := r.w.WaitAcked(progress, 100); err != nil {
		t.Errorf("no progress after healing: %v", err)
	}
	progressCancel()
	stopCtx, stopCancel := context.WithTimeout(ctx, 60*time.Second)
	if err := r.w.Stop(stopCtx); err != nil {
		t.Error(err)
	}
	stopCancel()
	samples, regressions := mon.Stop()
	if err := waitFullISR(ctx, c, jepsenTopic, sc.partitions, 30*time.Second); err != nil {
		t.Logf("after the run: %v", err) // availability, not safety
	}

	read := func() *checker.Read {
		rcl := c.Client(client.Config{RequestTimeout: 10 * time.Second})
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		defer rcancel()
		rd, err := checker.ReadAll(rctx, rcl, jepsenTopic, sc.partitions)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		return rd
	}
	first := read()
	second := read()
	ops := append(r.w.Ops(), r.extra...)
	res := checker.Check(ops, first, second, regressions)
	row.Result, row.Faults = res, r.nem.Faults()
	t.Logf("%s: %d faults, %d HW samples; %s", sc.name, r.nem.Faults(), samples, res.Summary())
	if nemErr != nil {
		row.Err = "nemesis: " + nemErr.Error()
		t.Errorf("nemesis: %v", nemErr)
	}
	if !res.OK() {
		var hist []string
		for _, f := range r.nem.History() {
			hist = append(hist, f.At.Format("15:04:05.000")+" "+f.What)
		}
		t.Errorf("checker:\n%s\nnemesis history:\n  %s", res.Report(), strings.Join(hist, "\n  "))
	}
}

// createTopic creates nt, retrying while the cluster is not ready for it; a
// topic that exists (a retry after a lost answer) counts as created.
func createTopic(ctx context.Context, admin *client.Admin, nt client.NewTopic) error {
	var last error
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := admin.CreateTopics(cctx, []client.NewTopic{nt}, client.CreateTopicsOptions{})
		cancel()
		if err == nil && res[0].Err == nil {
			return nil
		}
		if err == nil {
			err = res[0].Err
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Code == pb.ErrorCode_TOPIC_ALREADY_EXISTS {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("create topic %s: %w (last error %v)", nt.Name, ctx.Err(), last)
}

// waitFullISR waits until every partition of topic has a leader and its
// whole replica set in the ISR, as every running broker sees it.
func waitFullISR(ctx context.Context, c *cluster.Cluster, topic string, partitions int32, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var why string
	for {
		ok := true
		for _, b := range c.Brokers() {
			if !b.Running() {
				continue
			}
			ps, err := c.PartitionsAt(ctx, b, topic)
			if err != nil || len(ps) != int(partitions) {
				ok, why = false, fmt.Sprintf("%s: %v (%d partitions)", b.Name, err, len(ps))
				break
			}
			for i, p := range ps {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
					ok, why = false, fmt.Sprintf("%s sees p%d leader %d replicas %v isr %v", b.Name, i, p.Leader, p.Replicas, p.ISR)
					break
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not fully replicated: %s", topic, why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// leaderOf is the broker leading jepsen-p as fresh metadata has it, retried
// while there is none.
func (r *run) leaderOf(ctx context.Context, p int32) (*cluster.Node, error) {
	var last error
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		n, _, err := r.c.Leader(ctx, jepsenTopic, p)
		if err == nil && n.Running() {
			return n, nil
		}
		last = err
		sleep(ctx, 100*time.Millisecond)
	}
	return nil, fmt.Errorf("no leader of %s-%d: %v", jepsenTopic, p, last)
}

// progress requires n more acknowledgements within d.
func (r *run) progress(ctx context.Context, n int, d time.Duration, after string) error {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := r.w.WaitAcked(pctx, n); err != nil {
		return fmt.Errorf("no progress %s: %w", after, err)
	}
	return nil
}

// TestFaultLeaderKilled: the leader of a partition is killed (-9) again
// and again while producers write; each comes back from its disk.
func TestFaultLeaderKilled(t *testing.T) {
	runScenario(t, scenario{name: "leader kill -9 (separate roles)", cfg: separate(), nemesis: killLeaders})
}

// TestFaultLeaderKilledCombined is the same against three combined
// (controller,broker) nodes: a kill takes a controller with the broker.
func TestFaultLeaderKilledCombined(t *testing.T) {
	runScenario(t, scenario{name: "leader kill -9 (combined)", cfg: combined3(), nemesis: killLeaders})
}

func killLeaders(ctx context.Context, r *run) error {
	end := time.Now().Add(span())
	for i := 0; time.Now().Before(end); i++ {
		l, err := r.leaderOf(ctx, int32(i)%r.partitions)
		if err != nil {
			return err
		}
		if err := r.nem.Kill(l); err != nil {
			return err
		}
		sleep(ctx, time.Duration(500+rand.IntN(1500))*time.Millisecond)
		if err := r.nem.Start(ctx, l); err != nil {
			return err
		}
		if err := r.progress(ctx, 50, 30*time.Second, "after restarting "+l.Name); err != nil {
			return err
		}
	}
	return nil
}

// TestFaultPausedLeader: the leader is SIGSTOPped past its session
// timeout (the controller fences it and elects another), then resumed: the
// zombie must not acknowledge anything the new leader does not have.
func TestFaultPausedLeader(t *testing.T) {
	runScenario(t, scenario{name: "leader SIGSTOP/SIGCONT", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		end := time.Now().Add(span())
		for i := 0; time.Now().Before(end); i++ {
			l, err := r.leaderOf(ctx, int32(i)%r.partitions)
			if err != nil {
				return err
			}
			if err := r.nem.Pause(l); err != nil {
				return err
			}
			sleep(ctx, 5*time.Second) // past the 3 s session timeout
			if err := r.nem.Resume(l); err != nil {
				return err
			}
			if err := r.progress(ctx, 50, 30*time.Second, "after resuming "+l.Name); err != nil {
				return err
			}
		}
		return nil
	}})
}

// TestFaultControllerKilledDuringTopicCreation kills the active controller
// right after CreateTopics requests are sent: every topic ends up created
// exactly once with all its partitions led, and the workload keeps its
// records.
func TestFaultControllerKilledDuringTopicCreation(t *testing.T) {
	runScenario(t, scenario{name: "active controller kill -9 during topic creation", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		var names []string
		end := time.Now().Add(span())
		for i := 0; i < 3 || time.Now().Before(end); i++ {
			active, err := r.c.WaitActiveController(ctx)
			if err != nil {
				return err
			}
			name := fmt.Sprintf("created-%d", i)
			names = append(names, name)
			created := make(chan error, 1)
			go func() {
				created <- createTopic(ctx, r.admin, client.NewTopic{Name: name, Partitions: 3, ReplicationFactor: 3})
			}()
			sleep(ctx, time.Duration(rand.IntN(30))*time.Millisecond)
			if err := r.nem.Kill(active); err != nil {
				return err
			}
			if err := <-created; err != nil {
				return err
			}
			if err := r.nem.Start(ctx, active); err != nil {
				return err
			}
			if err := r.progress(ctx, 50, 30*time.Second, "after controller "+active.Name+" came back"); err != nil {
				return err
			}
		}
		for _, name := range names {
			if err := waitFullISR(ctx, r.c, name, 3, 30*time.Second); err != nil {
				return err
			}
		}
		return nil
	}})
}

// TestFaultControllerKilledDuringReassignment moves every partition of the
// jepsen topic onto a different set of brokers (one of four joins each)
// and kills the active controller while the moves are under way: they
// complete, and no acknowledged record is lost.
func TestFaultControllerKilledDuringReassignment(t *testing.T) {
	runScenario(t, scenario{
		name: "active controller kill -9 during reassignment", cfg: cluster.Config{Controllers: 3, Brokers: 4},
		assignments: [][]int32{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}},
		nemesis: func(ctx context.Context, r *run) error {
			targets := [][]int32{{4, 2, 3}, {2, 4, 1}, {3, 1, 4}}
			back := [][]int32{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}}
			end := time.Now().Add(span())
			for i := 0; i < 2 || time.Now().Before(end); i++ {
				plan := targets
				if i%2 == 1 {
					plan = back
				}
				var rs []client.Reassignment
				for p, reps := range plan {
					rs = append(rs, client.Reassignment{TopicPartition: client.TopicPartition{Topic: jepsenTopic, Partition: int32(p)}, Replicas: reps})
				}
				active, err := r.c.WaitActiveController(ctx)
				if err != nil {
					return err
				}
				if err := alterReassignments(ctx, r.admin, rs); err != nil {
					return err
				}
				sleep(ctx, time.Duration(50+rand.IntN(200))*time.Millisecond)
				if err := r.nem.Kill(active); err != nil {
					return err
				}
				sleep(ctx, time.Second)
				if err := r.nem.Start(ctx, active); err != nil {
					return err
				}
				if err := waitReassigned(ctx, r, plan, 60*time.Second); err != nil {
					return err
				}
				if err := r.progress(ctx, 50, 30*time.Second, "after the reassignment"); err != nil {
					return err
				}
			}
			return nil
		}})
}

func alterReassignments(ctx context.Context, admin *client.Admin, rs []client.Reassignment) error {
	var last error
	for i := 0; i < 50 && ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := admin.AlterPartitionReassignments(cctx, rs)
		cancel()
		if err == nil {
			for _, x := range res {
				if x.Err != nil {
					err = x.Err
				}
			}
		}
		if err == nil {
			return nil
		}
		last = err
		sleep(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("alter reassignments: %v", last)
}

// waitReassigned waits until no reassignment is listed and every
// partition's replicas are the plan's, as the brokers see it.
func waitReassigned(ctx context.Context, r *run, plan [][]int32, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	why := ""
	for ctx.Err() == nil {
		lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
		ongoing, err := r.admin.ListPartitionReassignments(lctx, nil)
		lcancel()
		if err != nil {
			why = err.Error()
		} else if len(ongoing) > 0 {
			why = fmt.Sprintf("%d reassignments under way: %+v", len(ongoing), ongoing)
		} else {
			ps, err := r.c.PartitionsAt(ctx, r.c.Brokers()[0], jepsenTopic)
			if err == nil {
				done := true
				for i, p := range ps {
					if fmt.Sprint(p.Replicas) != fmt.Sprint(plan[i]) {
						done, why = false, fmt.Sprintf("p%d replicas %v, want %v", i, p.Replicas, plan[i])
					}
				}
				if done {
					return nil
				}
			} else {
				why = err.Error()
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("reassignment not done within %v: %s", d, why)
}

// TestFaultLeaderPartitionedFromControllers cuts a partition leader off
// from every controller while clients still reach it. The controller
// fences it and elects another leader; from then on the old leader must
// not acknowledge acks=all produces (a probe sent straight to it must
// fail), and nothing it acknowledged before may be lost.
func TestFaultLeaderPartitionedFromControllers(t *testing.T) {
	runScenario(t, scenario{name: "leader partitioned from controllers", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		rounds := 1
		if long() {
			rounds = 8
		}
		for i := range rounds {
			p := int32(i) % r.partitions
			l, err := r.leaderOf(ctx, p)
			if err != nil {
				return err
			}
			r.nem.Partition([]*cluster.Node{l}, r.c.Controllers())
			// Wait until the controller fenced it and another broker leads.
			deadline := time.Now().Add(30 * time.Second)
			for {
				fenced, err := r.c.BrokerFenced(ctx, l.ID)
				moved := false
				if other := cluster.Others(r.c.Brokers(), l)[0]; err == nil && fenced {
					if ps, err := r.c.PartitionsAt(ctx, other, jepsenTopic); err == nil && ps[p].Leader != l.ID && ps[p].Leader >= 0 {
						moved = true
					}
				}
				if moved {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s partitioned from the controllers for 30 s: still not fenced and replaced (fenced=%v err=%v)", l.Name, fenced, err)
				}
				sleep(ctx, 100*time.Millisecond)
			}
			r.t.Logf("%s fenced and replaced as leader of p%d", l.Name, p)
			// The zombie takes produces from clients: acks=all must fail.
			for k := range 3 {
				op := r.probe(ctx, l, p, fmt.Sprintf("zombie-%d-%d", i, k))
				if op.Acked {
					return fmt.Errorf("%s, fenced, acknowledged acks=all %s at offset %d", l.Name, op.Value, op.Offset)
				}
			}
			if err := r.progress(ctx, 50, 30*time.Second, "with "+l.Name+" cut off"); err != nil {
				return err
			}
			r.nem.Heal()
			if err := r.progress(ctx, 50, 30*time.Second, "after healing"); err != nil {
				return err
			}
		}
		return nil
	}})
}

// probe sends one acks=all record straight to broker n for partition p and
// records it as an op of the history.
func (r *run) probe(ctx context.Context, n *cluster.Node, p int32, value string) checker.Op {
	op := checker.Op{Value: value, Producer: -1, Partition: p, Invoke: time.Now()}
	defer func() { r.extra = append(r.extra, op) }()
	bc, err := r.c.BrokerClient(n)
	if err != nil {
		op.Err, op.Complete = err, time.Now()
		return op
	}
	pctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	resp, err := bc.Produce(pctx, &pb.ProduceRequest{Acks: -1, TimeoutMs: 6000, Topics: []*pb.ProduceTopic{{Topic: jepsenTopic,
		Partitions: []*pb.ProducePartition{{Partition: p, PlainRecords: []*pb.Record{{Value: []byte(value)}}}}}}})
	op.Complete = time.Now()
	switch {
	case err != nil:
		op.Err = err
	case resp.Topics[0].Partitions[0].ErrorCode != pb.ErrorCode_NONE:
		part := resp.Topics[0].Partitions[0]
		op.Err = fmt.Errorf("%v: %s", part.ErrorCode, part.ErrorMessage)
	default:
		op.Acked, op.Offset = true, resp.Topics[0].Partitions[0].BaseOffset
	}
	r.t.Logf("probe %s to %s: acked=%v err=%v", value, n.Name, op.Acked, op.Err)
	return op
}

// TestFaultControllerMinority partitions a minority of the controllers:
// first a follower from everyone, then the active controller from the
// other controllers (the brokers still reach it): a new active controller
// takes over and the cluster carries on.
func TestFaultControllerMinority(t *testing.T) {
	runScenario(t, scenario{name: "controller minority partitioned", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		rounds := 1
		if long() {
			rounds = 8
		}
		hold := span() / time.Duration(2*rounds)
		for range rounds {
			active, err := r.c.WaitActiveController(ctx)
			if err != nil {
				return err
			}
			follower := cluster.Others(r.c.Controllers(), active)[rand.IntN(2)]
			r.nem.Partition([]*cluster.Node{follower}, cluster.Others(r.c.Nodes(), follower))
			sleep(ctx, hold/2)
			if err := r.progress(ctx, 50, 20*time.Second, "with follower controller "+follower.Name+" cut off"); err != nil {
				return err
			}
			r.nem.Heal()

			active, err = r.c.WaitActiveController(ctx)
			if err != nil {
				return err
			}
			r.nem.Partition([]*cluster.Node{active}, cluster.Others(r.c.Controllers(), active))
			deadline := time.Now().Add(20 * time.Second)
			for {
				next, err := r.c.ActiveController(ctx)
				if err == nil && next != active {
					r.t.Logf("active controller %s -> %s", active.Name, next.Name)
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("active controller %s cut off from the others: no new active controller in 20 s", active.Name)
				}
				sleep(ctx, 50*time.Millisecond)
			}
			sleep(ctx, hold/2)
			if err := r.progress(ctx, 50, 20*time.Second, "with the old active controller "+active.Name+" cut off"); err != nil {
				return err
			}
			r.nem.Heal()
		}
		return nil
	}})
}

// TestFaultRollingRestart restarts every node, controllers then brokers,
// one at a time (SIGTERM: controlled shutdown), under load; each broker
// waits for the ISR to fill again before the next goes.
func TestFaultRollingRestart(t *testing.T) {
	runScenario(t, scenario{name: "rolling restart", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		rounds := 1
		if long() {
			rounds = 4
		}
		for range rounds {
			for _, n := range r.c.Nodes() {
				if err := r.nem.Stop(n); err != nil {
					return fmt.Errorf("stop %s: %w", n.Name, err)
				}
				if err := r.nem.Start(ctx, n); err != nil {
					return err
				}
				if n.IsBroker() {
					if err := waitFullISR(ctx, r.c, jepsenTopic, r.partitions, 30*time.Second); err != nil {
						return err
					}
				}
				if err := r.progress(ctx, 30, 30*time.Second, "after restarting "+n.Name); err != nil {
					return err
				}
			}
		}
		return nil
	}})
}

// TestFaultPowerLoss kills every process at once (-9) under load and
// starts them all again. kill -9 keeps the page cache, so this is a crash
// of every process, not of the machine: Strata's default flush policy
// relies on replication, not fsync, for durability (ARCHITECTURE.md).
func TestFaultPowerLoss(t *testing.T) {
	runScenario(t, scenario{name: "whole cluster kill -9 and restart", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		rounds := 2
		if long() {
			rounds = 10
		}
		for range rounds {
			var wg sync.WaitGroup
			errs := make([]error, len(r.c.Nodes()))
			for i, n := range r.c.Nodes() {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = r.nem.Kill(n) }()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			sleep(ctx, time.Second)
			for _, n := range r.c.Nodes() {
				if err := n.Start(); err != nil {
					return err
				}
			}
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := r.c.WaitReady(rctx, r.c.Nodes()...)
			cancel()
			if err != nil {
				return err
			}
			if err := r.progress(ctx, 100, 40*time.Second, "after the restart"); err != nil {
				return err
			}
		}
		return nil
	}})
}

// TestFaultMixed draws faults at random — kill -9 or pause of any node,
// a node partitioned from a random half of the others, a one-way cut,
// delay on a node's links — each held a moment and then undone, one after
// another for the whole span.
func TestFaultMixed(t *testing.T) {
	runScenario(t, scenario{name: "mixed random faults", cfg: separate(), nemesis: func(ctx context.Context, r *run) error {
		nodes := r.c.Nodes()
		end := time.Now().Add(span())
		for time.Now().Before(end) && ctx.Err() == nil {
			n := nodes[rand.IntN(len(nodes))]
			others := cluster.Others(nodes, n)
			rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
			some := others[:1+rand.IntN(len(others)/2+1)]
			hold := time.Duration(500+rand.IntN(3000)) * time.Millisecond
			switch rand.IntN(5) {
			case 0:
				if err := r.nem.Kill(n); err != nil {
					return err
				}
				sleep(ctx, hold)
				if err := r.nem.Start(ctx, n); err != nil {
					return err
				}
			case 1:
				if err := r.nem.Pause(n); err != nil {
					return err
				}
				sleep(ctx, hold)
				if err := r.nem.Resume(n); err != nil {
					return err
				}
			case 2:
				r.nem.Partition([]*cluster.Node{n}, some)
				sleep(ctx, hold)
				r.nem.Heal()
			case 3:
				r.nem.CutOneWay([]*cluster.Node{n}, some)
				sleep(ctx, hold)
				r.nem.Heal()
			case 4:
				r.nem.Delay([]*cluster.Node{n}, time.Duration(5+rand.IntN(50))*time.Millisecond)
				sleep(ctx, hold)
				r.nem.Heal()
			}
			// Let the cluster settle before the next fault: every node ready.
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := r.c.WaitReady(rctx, nodes...)
			cancel()
			if err != nil {
				return fmt.Errorf("after %s: %w", r.nem.History()[len(r.nem.History())-1].What, err)
			}
		}
		return nil
	}})
}
