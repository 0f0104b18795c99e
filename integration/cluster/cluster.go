// Package cluster runs a Strata cluster as real `strata server` processes
// for the fault suite: separate controllers and brokers (or combined
// nodes), each with its own data directory and loopback ports, every peer
// and client link passing through a netproxy.Proxy in front of the node's
// port so that the nemesis can cut it.
//
// Routing. Each node gets a proxy in front of its controller port and one
// in front of its broker port, and advertises the proxy's address
// (--advertise-addr, --broker-advertise-addr); --quorum lists the
// controller proxies. So Raft (controller <-> controller), broker ->
// controller (registration, heartbeats, metadata), broker -> broker
// (replica fetches), and clients (bootstrapped from the broker proxies,
// routed by advertised addresses) all cross a proxy. A proxy tells its
// sources apart by asking the kernel which process owns the connecting
// socket (socketOwner): a node by name, anything else "client". The test's
// own observation calls (DescribeQuorum, /readyz) go to the real ports and
// are never faulted. The metrics port is not proxied.
//
// Cleanup is always done: t.Cleanup kills every process group, a watchdog
// kills them shortly before the test's deadline, and every child carries
// Pdeathsig=SIGKILL, so none outlives the test binary. On failure the tail
// of every node's log is printed.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/integration/netproxy"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Config describes a cluster.
type Config struct {
	Binary string // the strata binary
	// Controllers and Brokers are the counts of separate nodes; Combined
	// makes that many controller,broker nodes instead.
	Controllers, Brokers, Combined int
	// SessionTimeout is --broker-session-timeout (default 3 s).
	SessionTimeout time.Duration
	// RaftTimeouts is --raft-timeouts (default "tuned").
	RaftTimeouts string
	LogLevel     string // default "info"
	// LogTail is how many lines of each node's log are printed when the
	// test fails (default 60; STRATA_FAULT_LOG_LINES overrides).
	LogTail int
}

// Cluster is a running set of nodes.
type Cluster struct {
	t   testing.TB
	cfg Config
	dir string
	all []*Node
	obs *client.Client // observation client: bootstrapped from broker proxies

	mu struct {
		sync.Mutex
		pids        map[int]*Node
		unexpected  []string
		conns       map[string]*grpc.ClientConn
		stopWatchdg func() bool
	}
}

// New lays the cluster out (ports, proxies, directories) and starts every
// node, waiting until each /readyz answers. Everything it starts is stopped
// by t.Cleanup.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c := Layout(t, cfg)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, c.all...); err != nil {
		t.Fatal(err)
	}
	return c
}

// Layout prepares the cluster without starting a process.
func Layout(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 3 * time.Second
	}
	if cfg.RaftTimeouts == "" {
		cfg.RaftTimeouts = "tuned"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.LogTail <= 0 {
		cfg.LogTail = 60
		if n, err := strconv.Atoi(os.Getenv("STRATA_FAULT_LOG_LINES")); err == nil && n > 0 {
			cfg.LogTail = n
		}
	}
	c := &Cluster{t: t, cfg: cfg, dir: t.TempDir()}
	c.mu.pids = map[int]*Node{}
	c.mu.conns = map[string]*grpc.ClientConn{}
	t.Cleanup(c.cleanup)
	if d, ok := deadline(t); ok {
		timer := time.AfterFunc(time.Until(d)-15*time.Second, func() {
			fmt.Fprintf(os.Stderr, "cluster watchdog: %s is about to time out; killing its %d processes\n", t.Name(), len(c.pids()))
			c.killAll()
		})
		c.mu.stopWatchdg = timer.Stop
	}
	add := func(name string, id int32, roles string) {
		n := &Node{c: c, ID: id, Name: name, Roles: roles, Dir: filepath.Join(c.dir, name),
			Log: filepath.Join(c.dir, name+".log"), MetricsAddr: FreeAddr(t)}
		if strings.Contains(roles, "controller") {
			n.CtrlAddr = FreeAddr(t)
			n.CtrlProxy = c.proxy(t, name+"-ctrl", n.CtrlAddr)
		}
		if strings.Contains(roles, "broker") {
			n.BrokerAddr = FreeAddr(t)
			n.BrokerProxy = c.proxy(t, name+"-broker", n.BrokerAddr)
		}
		c.all = append(c.all, n)
	}
	for i := 1; i <= cfg.Combined; i++ {
		add(fmt.Sprintf("n%d", i), int32(i), "controller,broker")
	}
	for i := 1; i <= cfg.Controllers; i++ {
		add(fmt.Sprintf("c%d", i), int32(100+i), "controller")
	}
	for i := 1; i <= cfg.Brokers; i++ {
		add(fmt.Sprintf("b%d", i), int32(i), "broker")
	}
	return c
}

func deadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

func (c *Cluster) proxy(t testing.TB, name, backend string) *netproxy.Proxy {
	t.Helper()
	for range 20 {
		p, err := netproxy.New(netproxy.Config{Name: name, Listen: FreeAddr(t), Backend: backend, Identify: c.identify})
		if err == nil {
			return p
		}
	}
	t.Fatalf("cluster: no port for proxy %s", name)
	return nil
}

// Dir is the cluster's directory (data directories and logs).
func (c *Cluster) Dir() string { return c.dir }

// Nodes returns every node; Controllers and Brokers those with the role.
func (c *Cluster) Nodes() []*Node { return c.all }

func (c *Cluster) Controllers() []*Node {
	var out []*Node
	for _, n := range c.all {
		if n.IsController() {
			out = append(out, n)
		}
	}
	return out
}

func (c *Cluster) Brokers() []*Node {
	var out []*Node
	for _, n := range c.all {
		if n.IsBroker() {
			out = append(out, n)
		}
	}
	return out
}

// Node finds a node by name; Broker by broker id.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.all {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (c *Cluster) Broker(id int32) *Node {
	for _, n := range c.all {
		if n.IsBroker() && n.ID == id {
			return n
		}
	}
	return nil
}

func (c *Cluster) controllerByID(id int32) *Node {
	for _, n := range c.all {
		if n.IsController() && n.ID == id {
			return n
		}
	}
	return nil
}

// Bootstrap is the broker proxies' addresses: what a client is given.
func (c *Cluster) Bootstrap() []string {
	var out []string
	for _, n := range c.Brokers() {
		out = append(out, n.BrokerProxy.Addr())
	}
	return out
}

func (c *Cluster) quorum() string {
	var parts []string
	for _, n := range c.Controllers() {
		parts = append(parts, fmt.Sprintf("%d@%s", n.ID, n.CtrlProxy.Addr()))
	}
	return strings.Join(parts, ",")
}

// StartAll starts every node that is not running.
func (c *Cluster) StartAll() error {
	for _, n := range c.all {
		if !n.Running() {
			if err := n.Start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// WaitReady waits for every node of nodes to be ready, concurrently.
func (c *Cluster) WaitReady(ctx context.Context, nodes ...*Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.WaitReady(ctx) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Client returns a new client bootstrapped from the broker proxies; it is
// closed at cleanup.
func (c *Cluster) Client(cfg client.Config) *client.Client {
	c.t.Helper()
	cfg.Bootstrap = c.Bootstrap()
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Observer is a shared client for the test's own look-ups.
func (c *Cluster) Observer() *client.Client {
	if c.obs == nil {
		c.obs = c.Client(client.Config{RequestTimeout: 5 * time.Second})
	}
	return c.obs
}

// controllerConn is a gRPC connection to a controller's real port (not
// through its proxy: observation is never faulted).
func (c *Cluster) controllerConn(n *Node) (pb.ControllerServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.mu.conns[n.CtrlAddr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(n.CtrlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		c.mu.conns[n.CtrlAddr] = cc
	}
	return pb.NewControllerServiceClient(cc), nil
}

// ActiveController returns the controller a majority of the running,
// unpaused controllers name as the Raft leader (and that agrees itself).
func (c *Cluster) ActiveController(ctx context.Context) (*Node, error) {
	votes := map[int32]int{}
	self := map[int32]bool{}
	for _, n := range c.Controllers() {
		if !n.Running() || n.Paused() {
			continue
		}
		cl, err := c.controllerConn(n)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := cl.DescribeQuorum(cctx, &pb.DescribeQuorumRequest{})
		cancel()
		if err != nil || resp.LeaderId <= 0 {
			continue
		}
		votes[resp.LeaderId]++
		if resp.LeaderId == n.ID {
			self[n.ID] = true
		}
	}
	need := len(c.Controllers())/2 + 1
	for id, v := range votes {
		if v >= need && self[id] {
			return c.controllerByID(id), nil
		}
	}
	return nil, fmt.Errorf("cluster: no controller leader agreed by a majority (votes %v)", votes)
}

// WaitActiveController polls ActiveController until ctx ends.
func (c *Cluster) WaitActiveController(ctx context.Context) (*Node, error) {
	for {
		n, err := c.ActiveController(ctx)
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Leader returns the broker node leading topic-partition per fresh
// metadata, and its leader epoch.
func (c *Cluster) Leader(ctx context.Context, topic string, partition int32) (*Node, int32, error) {
	md, err := c.Observer().RefreshMetadata(ctx)
	if err != nil {
		return nil, 0, err
	}
	b, epoch, err := md.Leader(topic, partition)
	if err != nil {
		return nil, 0, err
	}
	n := c.Broker(b.ID)
	if n == nil {
		return nil, 0, fmt.Errorf("cluster: leader %d is no node of ours", b.ID)
	}
	return n, epoch, nil
}

// identify names the process that opened a connection to one of our
// proxies: a node's name, or "client".
func (c *Cluster) identify(local, remote net.Addr) string {
	la, ok1 := local.(*net.TCPAddr)
	ra, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return "client"
	}
	if pid := socketOwner(ra.Port, la.Port, c.pids()); pid != 0 {
		c.mu.Lock()
		node := c.mu.pids[pid]
		c.mu.Unlock()
		if node != nil {
			return node.Name
		}
	}
	return "client"
}

func (c *Cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.mu.pids))
	for pid := range c.mu.pids {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

func (c *Cluster) track(n *Node, pid int) {
	c.mu.Lock()
	c.mu.pids[pid] = n
	c.mu.Unlock()
}

func (c *Cluster) untrack(pid int) {
	c.mu.Lock()
	delete(c.mu.pids, pid)
	c.mu.Unlock()
}

func (c *Cluster) unexpectedExit(n *Node, err error) {
	c.mu.Lock()
	c.mu.unexpected = append(c.mu.unexpected, fmt.Sprintf("%s exited on its own: %v", n.Name, err))
	c.mu.Unlock()
}

// UnexpectedExits lists nodes that exited without the harness asking.
func (c *Cluster) UnexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.mu.unexpected...)
}

func (c *Cluster) killAll() {
	for _, n := range c.all {
		if n.Running() {
			n.Kill()
		}
	}
}

func (c *Cluster) cleanup() {
	if c.mu.stopWatchdg != nil {
		c.mu.stopWatchdg()
	}
	c.killAll()
	for _, n := range c.all {
		for _, p := range []*netproxy.Proxy{n.CtrlProxy, n.BrokerProxy} {
			if p != nil {
				p.Close()
			}
		}
	}
	c.mu.Lock()
	for _, cc := range c.mu.conns {
		cc.Close()
	}
	c.mu.Unlock()
	if ex := c.UnexpectedExits(); len(ex) > 0 {
		c.t.Errorf("cluster: %s", strings.Join(ex, "; "))
	}
	if c.t.Failed() {
		c.DumpLogs()
	}
}

// DumpLogs prints the tail of every node's log, and copies the whole logs
// to $STRATA_FAULT_LOGS/<test>/ when that is set.
func (c *Cluster) DumpLogs() {
	keep := os.Getenv("STRATA_FAULT_LOGS")
	for _, n := range c.all {
		data, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > c.cfg.LogTail {
			lines = lines[len(lines)-c.cfg.LogTail:]
		}
		c.t.Logf("----- %s (%s, id %d) log, last %d lines -----\n%s", n.Name, n.Roles, n.ID, len(lines), strings.Join(lines, "\n"))
		if keep != "" {
			dst := filepath.Join(keep, strings.ReplaceAll(c.t.Name(), "/", "_"))
			os.MkdirAll(dst, 0o755)
			os.WriteFile(filepath.Join(dst, n.Name+".log"), data, 0o644)
		}
	}
}

// Ports: STRATA_TEST_PORTS=lo-hi confines every port to a range (several
// suites on one machine); without it the kernel picks.
var (
	portLo, portHi int
	portNext       atomic.Int64
)

func init() {
	if lo, hi, ok := strings.Cut(os.Getenv("STRATA_TEST_PORTS"), "-"); ok {
		portLo, _ = strconv.Atoi(lo)
		portHi, _ = strconv.Atoi(hi)
		if portLo <= 0 || portHi <= portLo {
			portLo, portHi = 0, 0
		}
		if portHi > portLo {
			portNext.Store(int64(rand.IntN(portHi - portLo)))
		}
	}
}

// handedOut holds every port FreeAddr has answered in this process: a port
// is free when it is picked but only bound later by the node, so without
// this the kernel can hand the same port to two nodes of one cluster (seen:
// one broker's gRPC port given again as another's metrics port).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// claim records port as handed out; false if it already was.
func claim(port int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	if handedOut.ports[port] {
		return false
	}
	handedOut.ports[port] = true
	return true
}

// FreeAddr returns a loopback address free right now and never handed out
// before in this process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	if portHi == 0 {
		for range 1000 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().(*net.TCPAddr)
			ln.Close()
			if claim(addr.Port) {
				return addr.String()
			}
		}
		t.Fatal("cluster: the kernel keeps answering ports already handed out")
	}
	for range portHi - portLo {
		p := portLo + int(portNext.Add(1))%(portHi-portLo)
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			if claim(p) {
				return addr
			}
		}
	}
	t.Fatalf("cluster: no free port in %d-%d", portLo, portHi)
	return ""
}

// ControllerClient is a ControllerService client on n's real port.
func (c *Cluster) ControllerClient(n *Node) (pb.ControllerServiceClient, error) {
	return c.controllerConn(n)
}

// BrokerClient is a BrokerService client on n's real port (not through
// its proxy).
func (c *Cluster) BrokerClient(n *Node) (pb.BrokerServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.mu.conns[n.BrokerAddr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(n.BrokerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		c.mu.conns[n.BrokerAddr] = cc
	}
	return pb.NewBrokerServiceClient(cc), nil
}

// BrokerFenced asks the active controller whether broker id is fenced.
func (c *Cluster) BrokerFenced(ctx context.Context, id int32) (bool, error) {
	active, err := c.ActiveController(ctx)
	if err != nil {
		return false, err
	}
	cl, err := c.controllerConn(active)
	if err != nil {
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cl.DescribeCluster(cctx, &pb.DescribeClusterRequest{IncludeFenced: true})
	if err != nil {
		return false, err
	}
	for _, b := range resp.Brokers {
		if b.BrokerId == id {
			return b.Fenced, nil
		}
	}
	return true, nil // unregistered
}

// PartitionState is one partition as a broker's metadata image has it.
type PartitionState struct {
	Leader, LeaderEpoch int32
	Replicas, ISR       []int32
}

// PartitionsAt reads topic's partitions from broker n's own metadata image
// (its real port).
func (c *Cluster) PartitionsAt(ctx context.Context, n *Node, topic string) ([]PartitionState, error) {
	bc, err := c.BrokerClient(n)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := bc.Metadata(cctx, &pb.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.ErrorCode != pb.ErrorCode_NONE {
			return nil, fmt.Errorf("cluster: %s at %s: %v", topic, n.Name, t.ErrorCode)
		}
		out := make([]PartitionState, len(t.Partitions))
		for _, p := range t.Partitions {
			if int(p.Partition) < len(out) {
				out[p.Partition] = PartitionState{Leader: p.LeaderId, LeaderEpoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.Isr}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("cluster: %s unknown at %s", topic, n.Name)
}
