package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/integration/checker"
)

// TestDockerCompose builds the image (`make image`: a static binary FROM
// scratch), brings deploy/docker-compose.yml up (3 controllers, 3 brokers),
// produces and consumes through it from a client container on the
// cluster's network, then, with records checked after each step: kills a
// broker and the active controller (docker kill: SIGKILL) and starts them
// again, pauses a broker (docker pause), and disconnects one from the
// network (docker network disconnect); then runs the fault suite's
// workload and checker against the containers with docker pause, network
// disconnect and kill as the nemesis.
//
// It needs a Docker engine and skips with the reason where there is none.
// Without docker compose (or docker-compose), or with
// STRATA_DOCKER_PLAIN=1, it runs the same six containers with plain
// `docker run` on a `docker network` (containers named as the services).
// It takes minutes (an image build), so it runs under STRATA_LONG=1 only.
func TestDockerCompose(t *testing.T) {
	if !long() {
		t.Skip("builds an image and runs six containers (minutes): set STRATA_LONG=1 (make test-long)")
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine here: docker version: %v: %s", err, bytes.TrimSpace(out))
	}
	_, file, _, _ := runtime.Caller(0)
	d := &dockerCluster{t: t, root: filepath.Dir(filepath.Dir(file)),
		tag: fmt.Sprintf("strata:test-%d", os.Getpid()), project: fmt.Sprintf("stratatest%d", os.Getpid())}
	switch {
	case os.Getenv("STRATA_DOCKER_PLAIN") != "":
		t.Log("STRATA_DOCKER_PLAIN: plain docker run, not compose")
	case exec.Command("docker", "compose", "version").Run() == nil:
		d.compose = []string{"docker", "compose"}
	case exec.Command("docker-compose", "version").Run() == nil:
		d.compose = []string{"docker-compose"}
	default:
		t.Log("neither `docker compose` nor `docker-compose`: running the services with plain docker run")
	}

	start := time.Now()
	d.must("", "make", "image", "IMAGE="+d.tag)
	t.Logf("image %s built in %v", d.tag, time.Since(start).Round(time.Second))
	t.Cleanup(func() { d.run("", "docker", "rmi", "-f", d.tag) })
	t.Cleanup(d.down)
	d.up()
	d.waitHealthy(dockerServices...)
	t.Logf("cluster healthy %v after start", time.Since(start).Round(time.Second))

	d.cli("", "topics", "create", "orders", "--partitions", "3", "--replication-factor", "3", "--config", "min.insync.replicas=2")
	produced := 0
	produce := func() {
		t.Helper()
		var b strings.Builder
		for i := produced; i < produced+100; i++ {
			fmt.Fprintf(&b, "order-%d\n", i)
		}
		d.cli(b.String(), "produce", "orders", "--timeout", "60s")
		produced += 100
		d.consumeAll(produced)
	}
	produce()

	// Kill a broker and the active controller, carry on, start them again.
	var desc struct {
		ControllerID int32 `json:"controller_id"`
	}
	out := d.cli("", "cluster", "describe", "--output", "json")
	if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &desc) != nil || desc.ControllerID < 101 || desc.ControllerID > 103 {
		t.Fatalf("cluster describe: %s", out)
	}
	active := fmt.Sprintf("controller-%d", desc.ControllerID-100)
	for _, svc := range []string{"broker-1", active} {
		d.must("", "docker", "kill", d.container(svc))
		t.Logf("killed %s", svc)
	}
	produce()
	d.start("broker-1", active)
	d.waitHealthy(dockerServices...)
	produce()

	// Pause a broker (SIGSTOP of the container's processes).
	d.must("", "docker", "pause", d.container("broker-2"))
	t.Log("paused broker-2")
	produce()
	d.must("", "docker", "unpause", d.container("broker-2"))
	d.waitHealthy(dockerServices...)

	// Cut a broker off the network.
	d.must("", "docker", "network", "disconnect", d.network(), d.container("broker-3"))
	t.Log("disconnected broker-3")
	produce()
	d.must("", "docker", "network", "connect", "--alias", "broker-3", d.network(), d.container("broker-3"))
	d.waitHealthy(dockerServices...)
	produce()

	d.jepsen()
	t.Logf("docker run done in %v", time.Since(start).Round(time.Second))
}

// jepsen runs the fault suite's workload and checker against the
// containers, with docker pause, docker network disconnect and docker kill
// of brokers as the nemesis. The Go client in this process reaches the
// containers at their IPs on the network (the names they advertise resolve
// only inside it), looked up at each dial.
func (d *dockerCluster) jepsen() {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// gRPC resolves a target's host name itself before it calls a custom
	// dialer; these names resolve only inside the Docker network, so hand
	// them to the dialer unresolved for this test (process-wide: restored
	// after it).
	resolver.SetDefaultScheme("passthrough")
	defer resolver.SetDefaultScheme("dns")
	ids := map[string]string{} // containers keep their id through pause, disconnect, kill and start
	for _, svc := range dockerServices {
		ids[svc] = d.container(svc)
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		out, _, err := d.run2("", "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", ids[host])
		if fields := strings.Fields(out); err == nil && len(fields) > 0 {
			addr = net.JoinHostPort(fields[0], port)
		}
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	newClient := func() *client.Client {
		cl, err := client.New(client.Config{Bootstrap: []string{"broker-1:9092", "broker-2:9092", "broker-3:9092"},
			Dialer: dial, RequestTimeout: 5 * time.Second, MetadataMaxAge: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	cl := newClient()
	const partitions = 3
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	defer ccancel()
	if err := createTopic(cctx, client.NewAdmin(cl), client.NewTopic{Name: jepsenTopic, Partitions: partitions, ReplicationFactor: 3,
		Configs: map[string]string{"min.insync.replicas": "2"}}); err != nil {
		t.Fatal(err)
	}
	prod, err := client.NewProducer(cl, client.ProducerConfig{Acks: client.AcksAll, Linger: 2 * time.Millisecond,
		RequestTimeout: 5 * time.Second, DeliveryTimeout: 60 * time.Second, MaxBlock: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mon := checker.StartHWMonitor(client.NewAdmin(newClient()), jepsenTopic, partitions, 50*time.Millisecond)
	w := checker.StartWorkload(prod, checker.WorkloadConfig{Topic: jepsenTopic, Partitions: partitions})
	wait := func(n int, why string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
		defer wcancel()
		if err := w.WaitAcked(wctx, n); err != nil {
			t.Fatalf("%s: %v", why, err)
		}
	}
	wait(100, "no progress before faults")
	faults := 0
	brokers := []string{"broker-1", "broker-2", "broker-3"}
	for i := range 6 {
		svc := brokers[i%3]
		id := ids[svc]
		switch i / 3 {
		case 0:
			t.Logf("jepsen: docker pause %s", svc)
			d.must("", "docker", "pause", id)
			time.Sleep(4 * time.Second)
			d.must("", "docker", "unpause", id)
		case 1:
			t.Logf("jepsen: docker network disconnect %s", svc)
			d.must("", "docker", "network", "disconnect", d.network(), id)
			time.Sleep(4 * time.Second)
			d.must("", "docker", "network", "connect", "--alias", svc, d.network(), id)
		}
		faults++
		d.waitHealthy(dockerServices...)
		wait(100, "no progress after a fault on "+svc)
	}
	for _, svc := range brokers {
		t.Logf("jepsen: docker kill %s", svc)
		d.must("", "docker", "kill", ids[svc])
		faults++
		time.Sleep(time.Second)
		d.start(svc)
		d.waitHealthy(dockerServices...)
		wait(100, "no progress after restarting "+svc)
	}
	sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
	if err := w.Stop(sctx); err != nil {
		t.Error(err)
	}
	scancel()
	_, regressions := mon.Stop()
	read := func() *checker.Read {
		rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
		defer rcancel()
		rd, err := checker.ReadAll(rctx, newClient(), jepsenTopic, partitions)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		return rd
	}
	res := checker.Check(w.Ops(), read(), read(), regressions)
	checker.Record(checker.Row{Scenario: "docker: pause, network disconnect, kill", Faults: faults, Result: res})
	t.Logf("jepsen against containers: %d faults; %s", faults, res.Summary())
	if !res.OK() {
		t.Errorf("checker:\n%s", res.Report())
	}
}

var dockerServices = []string{"controller-1", "controller-2", "controller-3", "broker-1", "broker-2", "broker-3"}

// dockerCluster drives deploy/docker-compose.yml, or the same services
// with plain docker commands when compose is nil.
type dockerCluster struct {
	t       *testing.T
	root    string
	tag     string
	project string
	compose []string // nil: plain docker
}

// run runs a command and returns its stdout and stderr apart (a consumer's
// summary on stderr must not cut a record line on stdout in two).
func (d *dockerCluster) run(stdin, name string, args ...string) (string, error) {
	out, _, err := d.run2(stdin, name, args...)
	return out, err
}

func (d *dockerCluster) run2(stdin, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = d.root
	cmd.Env = append(os.Environ(), "STRATA_IMAGE="+d.tag)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (d *dockerCluster) must(stdin, name string, args ...string) string {
	d.t.Helper()
	out, errOut, err := d.run2(stdin, name, args...)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (d *dockerCluster) dc(args ...string) []string {
	return append(append(append([]string(nil), d.compose[1:]...), "-p", d.project, "-f", "deploy/docker-compose.yml"), args...)
}

func (d *dockerCluster) network() string { return d.project + "_default" }

// plainArgs mirrors a service of deploy/docker-compose.yml.
func (d *dockerCluster) plainArgs(svc string) []string {
	quorum := "101@controller-1:9093,102@controller-2:9093,103@controller-3:9093"
	role, idx, _ := strings.Cut(svc, "-")
	args := []string{"run", "-d", "--name", d.project + "-" + svc, "--network", d.network(), "--network-alias", svc,
		"--hostname", svc, "-v", d.project + "-" + svc + ":/data", d.tag, // the image's HEALTHCHECK runs strata health
		"server", "--data-dir", "/data", "--metrics-addr", "0.0.0.0:9644", "--quorum", quorum}
	if role == "controller" {
		return append(args, "--node-id", "10"+idx, "--roles", "controller", "--controller-addr", "0.0.0.0:9093", "--advertise-addr", svc+":9093")
	}
	return append(args, "--node-id", idx, "--roles", "broker", "--broker-addr", "0.0.0.0:9092", "--broker-advertise-addr", svc+":9092")
}

func (d *dockerCluster) up() {
	if d.compose != nil {
		d.must("", d.compose[0], d.dc("up", "-d")...)
		return
	}
	d.must("", "docker", "network", "create", d.network())
	for _, svc := range dockerServices {
		d.must("", "docker", d.plainArgs(svc)...)
	}
}

func (d *dockerCluster) down() {
	if d.t.Failed() {
		var out string
		if d.compose != nil {
			o, e, _ := d.run2("", d.compose[0], d.dc("logs", "--tail", "40")...)
			out = o + e
		} else {
			for _, svc := range dockerServices {
				o, e, _ := d.run2("", "docker", "logs", "--tail", "40", d.container(svc))
				out += "----- " + svc + "\n" + o + e
			}
		}
		d.t.Logf("container logs:\n%s", out)
	}
	if d.compose != nil {
		d.run("", d.compose[0], d.dc("down", "-v", "--remove-orphans", "-t", "5")...)
		return
	}
	for _, svc := range dockerServices {
		d.run("", "docker", "rm", "-f", "-v", d.container(svc))
		d.run("", "docker", "volume", "rm", d.project+"-"+svc)
	}
	d.run("", "docker", "network", "rm", d.network())
}

func (d *dockerCluster) container(svc string) string {
	if d.compose == nil {
		return d.project + "-" + svc
	}
	return strings.TrimSpace(d.must("", d.compose[0], d.dc("ps", "-q", svc)...))
}

func (d *dockerCluster) start(svcs ...string) {
	if d.compose != nil {
		d.must("", d.compose[0], d.dc(append([]string{"start"}, svcs...)...)...)
		return
	}
	for _, svc := range svcs {
		d.must("", "docker", "start", d.container(svc))
	}
}

func (d *dockerCluster) waitHealthy(svcs ...string) {
	d.t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for _, svc := range svcs {
		for {
			out, _ := d.run("", "docker", "inspect", "-f", "{{.State.Health.Status}}", d.container(svc))
			if strings.TrimSpace(out) == "healthy" {
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("%s not healthy within 120 s: %s", svc, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// cli runs a strata command in a client container on the cluster's network.
func (d *dockerCluster) cli(stdin string, args ...string) string {
	d.t.Helper()
	full := append([]string{"run", "--rm", "-i", "--network", d.network(),
		"-e", "STRATA_BOOTSTRAP=broker-1:9092,broker-2:9092,broker-3:9092", d.tag}, args...)
	return d.must(stdin, "docker", full...)
}

// consumeAll reads from the beginning until order-0..n-1 have all been
// seen. A produce retried across a kill may store records twice (the
// producer is not idempotent), so it reads more when it saw copies.
func (d *dockerCluster) consumeAll(n int) {
	d.t.Helper()
	want := n
	for try := 0; ; try++ {
		got := d.cli("", "consume", "orders", "--from-beginning", "--max-messages", fmt.Sprint(want), "--timeout", "30s")
		seen := map[string]int{}
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, "order-") {
				seen[l]++
			}
		}
		missing, copies := 0, 0
		for i := range n {
			if seen[fmt.Sprintf("order-%d", i)] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		for _, c := range seen {
			copies += c - 1
		}
		if try == 3 || copies == 0 {
			d.t.Fatalf("%d of order-0..%d not consumed (%d copies seen):\n%s", missing, n-1, copies, got)
		}
		want = n + copies + missing
	}
}
