package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDockerCompose builds the image (`make image`: a static binary FROM
// scratch), brings deploy/docker-compose.yml up (3 controllers, 3 brokers),
// produces and consumes through it from a client container on the
// compose network, kills a broker and the active controller (docker kill:
// SIGKILL), checks the cluster carries on with every record, and starts
// them again. It needs a Docker engine and docker compose (or
// docker-compose) and skips with the reason where there is none; it takes
// minutes (an image build), so it runs under STRATA_LONG=1 only.
func TestDockerCompose(t *testing.T) {
	if !long() {
		t.Skip("builds an image and runs six containers (minutes): set STRATA_LONG=1 (make test-long)")
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine here: docker version: %v: %s", err, bytes.TrimSpace(out))
	}
	var compose []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		compose = []string{"docker", "compose"}
	} else if exec.Command("docker-compose", "version").Run() == nil {
		compose = []string{"docker-compose"}
	} else {
		t.Skip("a Docker engine but neither `docker compose` nor `docker-compose`: the compose file can not be run here")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	tag := fmt.Sprintf("strata:test-%d", os.Getpid())
	project := fmt.Sprintf("stratatest%d", os.Getpid())

	run := func(stdin string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "STRATA_IMAGE="+tag)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(stdin string, name string, args ...string) string {
		t.Helper()
		out, err := run(stdin, name, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return out
	}
	dc := func(args ...string) []string {
		return append(append(compose[1:], "-p", project, "-f", "deploy/docker-compose.yml"), args...)
	}

	start := time.Now()
	must("", "make", "image", "IMAGE="+tag)
	t.Logf("image %s built in %v", tag, time.Since(start).Round(time.Second))
	t.Cleanup(func() { run("", "docker", "rmi", "-f", tag) })
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run("", compose[0], dc("logs", "--tail", "40")...)
			t.Logf("compose logs:\n%s", out)
		}
		run("", compose[0], dc("down", "-v", "--remove-orphans", "-t", "5")...)
	})
	must("", compose[0], dc("up", "-d")...)
	services := []string{"controller-1", "controller-2", "controller-3", "broker-1", "broker-2", "broker-3"}
	container := func(svc string) string {
		return strings.TrimSpace(must("", compose[0], dc("ps", "-q", svc)...))
	}
	waitHealthy := func(svcs ...string) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for _, svc := range svcs {
			for {
				id := container(svc)
				out, _ := run("", "docker", "inspect", "-f", "{{.State.Health.Status}}", id)
				if strings.TrimSpace(out) == "healthy" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not healthy within 120 s: %s", svc, out)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	waitHealthy(services...)
	t.Logf("cluster healthy %v after start", time.Since(start).Round(time.Second))

	// A client container on the compose network.
	network := project + "_default"
	cli := func(stdin string, args ...string) string {
		t.Helper()
		full := append([]string{"run", "--rm", "-i", "--network", network,
			"-e", "STRATA_BOOTSTRAP=broker-1:9092,broker-2:9092,broker-3:9092", tag}, args...)
		return must(stdin, "docker", full...)
	}
	cli("", "topics", "create", "orders", "--partitions", "3", "--replication-factor", "3", "--config", "min.insync.replicas=2")
	lines := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "order-%d\n", i)
		}
		return b.String()
	}
	// consumeAll reads from the beginning until order-0..n-1 have all been
	// seen. A produce retried across a kill may store records twice (the
	// producer is not idempotent), so it reads more when it saw copies.
	consumeAll := func(n int) {
		t.Helper()
		want := n
		for try := 0; ; try++ {
			got := cli("", "consume", "orders", "--from-beginning", "--max-messages", fmt.Sprint(want), "--timeout", "30s")
			seen := map[string]int{}
			for _, l := range strings.Split(got, "\n") {
				if strings.HasPrefix(l, "order-") {
					seen[l]++
				}
			}
			missing := 0
			for i := range n {
				if seen[fmt.Sprintf("order-%d", i)] == 0 {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			copies := 0
			for _, c := range seen {
				copies += c - 1
			}
			if try == 3 || copies == 0 {
				t.Fatalf("%d of order-0..%d not consumed (%d copies seen):\n%s", missing, n-1, copies, got)
			}
			want = n + copies + missing
		}
	}
	cli(lines(0, 100), "produce", "orders")
	consumeAll(100)

	// Kill a broker and the active controller.
	var desc struct {
		ControllerID int32 `json:"controller_id"`
	}
	out := cli("", "cluster", "describe", "--output", "json")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &desc); err != nil {
		t.Fatalf("cluster describe: %v\n%s", err, out)
	}
	activeSvc := fmt.Sprintf("controller-%d", desc.ControllerID-100)
	if desc.ControllerID < 101 || desc.ControllerID > 103 {
		t.Fatalf("cluster describe: controller id %d\n%s", desc.ControllerID, out)
	}
	for _, svc := range []string{"broker-1", activeSvc} {
		must("", "docker", "kill", container(svc))
		t.Logf("killed %s", svc)
	}
	cli(lines(100, 200), "produce", "orders", "--timeout", "60s")
	consumeAll(200)

	// Bring them back: they rejoin from their volumes.
	must("", compose[0], dc("start", "broker-1", activeSvc)...)
	waitHealthy(services...)
	cli(lines(200, 300), "produce", "orders")
	consumeAll(300)
	t.Logf("compose run done in %v", time.Since(start).Round(time.Second))
}
