package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/integration/cluster"
)

// TestHarnessSeparateRoles starts 3 controllers and 3 brokers as separate
// processes behind proxies: every node gets ready, every proxied link is
// named by the process that opened it (brokers on the controllers'
// proxies, brokers and controllers where they dial), and the cleanup leaves
// no process behind.
func TestHarnessSeparateRoles(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := cluster.New(t, cluster.Config{Binary: strataBin, Controllers: 3, Brokers: 3})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		active, err := c.WaitActiveController(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The active controller's proxy carries every broker's heartbeats;
		// each other controller's, the leader's Raft appends.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok := true
			conns := active.CtrlProxy.Conns()
			for _, b := range c.Brokers() {
				if conns[b.Name] == 0 {
					ok = false
				}
			}
			for _, n := range cluster.Others(c.Controllers(), active) {
				if n.CtrlProxy.Conns()[active.Name] == 0 {
					ok = false
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				for _, n := range c.Controllers() {
					t.Logf("%s's proxy: %v", n.Name, n.CtrlProxy.Conns())
				}
				t.Fatalf("links not named by their source (active controller %s)", active.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := c.Observer().RefreshMetadata(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Brokers()[0].BrokerProxy.Conns()["client"]; got == 0 {
			t.Errorf("the observer's connection through b1's proxy is not named client: %v", c.Brokers()[0].BrokerProxy.Conns())
		}
		for _, n := range c.Nodes() {
			pids = append(pids, n.Pid())
		}
		// strata health: the container health check.
		health := func(args ...string) int {
			out, err := exec.Command(strataBin, append([]string{"health", "--timeout", "2s"}, args...)...).CombinedOutput()
			if e, ok := err.(*exec.ExitError); ok {
				return e.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "ready") {
				t.Errorf("strata health printed %q", out)
			}
			return 0
		}
		if code := health("--url", "http://"+active.MetricsAddr+"/readyz"); code != 0 {
			t.Errorf("strata health on a ready node: exit %d", code)
		}
		if code := health("--url", "http://"+active.CtrlAddr+"/readyz"); code != 1 { // not HTTP/1
			t.Errorf("strata health on a non-HTTP port: exit %d, want 1", code)
		}
		if code := health("--url", "ftp://x"); code != 2 {
			t.Errorf("strata health with a bad URL: exit %d, want 2", code)
		}
	})
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + itoa(pid)); err == nil {
			if data, _ := os.ReadFile("/proc/" + itoa(pid) + "/cmdline"); strings.Contains(string(data), "strata") {
				t.Errorf("pid %d outlived its test", pid)
			}
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
