package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// freeBase finds a base port whose node ports (base+100*i+2..4, i=1..3) are free.
func freeBase(t *testing.T) int {
	for range 50 {
		base := 20000 + 100*rand.IntN(150)
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			for k := 2; k <= 4 && ok; k++ {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+100*i+k))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestCLIAgainstScriptCluster starts a three-node cluster with
// scripts/cluster.sh and drives it with the CLI: a replicated topic,
// produce, consume, a reassignment plan (generate, execute, verify),
// preferred leader election, cluster describe as JSON; then stops it.
func TestCLIAgainstScriptCluster(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	base := freeBase(t)
	dir := t.TempDir()
	env := append(os.Environ(), fmt.Sprintf("BASE_PORT=%d", base), "CLUSTER_DIR="+dir, "STRATA="+strataBin)
	script := func(arg string) string {
		cmd := exec.Command(filepath.Join(root, "scripts", "cluster.sh"), arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			for i := 1; i <= 3; i++ {
				log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
				t.Logf("node %d log tail:\n%s", i, tail(string(log), 2000))
			}
			t.Fatalf("cluster.sh %s: %v\n%s", arg, err, out)
		}
		return string(out)
	}
	script("up")
	defer script("down")
	bootstrap := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", base+102, base+202)
	cli := func(stdin string, args ...string) (string, int) {
		cmd := exec.Command(strataBin, append(args, "--bootstrap", bootstrap)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		code := 0
		if e, ok := err.(*exec.ExitError); ok {
			code = e.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, code := cli(stdin, args...)
		if code != 0 {
			t.Fatalf("strata %v: exit %d\n%s", args, code, out)
		}
		return out
	}
	must("", "topics", "create", "orders", "--partitions", "3", "--replication-factor", "3", "--config", "min.insync.replicas=2")
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf("order-%d", i))
	}
	must(strings.Join(lines, "\n")+"\n", "produce", "orders")
	got := must("", "consume", "orders", "--from-beginning", "--max-messages", "50", "--timeout", "10s")
	for _, l := range lines {
		if !strings.Contains(got, l+"\n") {
			t.Fatalf("consume lacks %q:\n%s", l, got)
		}
	}
	gen := exec.Command(strataBin, "reassign", "generate", "--topics", "orders", "--brokers", "3,2,1", "--bootstrap", bootstrap)
	plan, err := gen.Output() // the plan on stdout; the current assignment goes to stderr
	if err != nil {
		t.Fatalf("reassign generate: %v", err)
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, plan, 0o644); err != nil {
		t.Fatal(err)
	}
	must("", "reassign", "execute", "--plan", planFile)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := cli("", "reassign", "verify", "--plan", planFile)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reassignment not done within 30 s:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	must("", "elect-leaders", "--preferred", "--topic", "orders")
	var cluster struct {
		Brokers []struct {
			ID     int32 `json:"id"`
			Fenced bool  `json:"fenced"`
		} `json:"brokers"`
	}
	if err := json.Unmarshal([]byte(must("", "cluster", "describe", "--output", "json")), &cluster); err != nil {
		t.Fatal(err)
	}
	if len(cluster.Brokers) != 3 {
		t.Fatalf("cluster describe: %+v", cluster)
	}
	// Bad input gets a clear message and exit 2 / 1.
	if out, code := cli("", "topics", "create", "bad", "--replication-factor", "x"); code != 2 {
		t.Fatalf("bad flag: exit %d\n%s", code, out)
	}
	if out, code := cli("", "consume", "missing", "--max-messages", "1", "--timeout", "2s"); code != 1 || !strings.Contains(out, "does not exist") {
		t.Fatalf("unknown topic: exit %d\n%s", code, out)
	}
	os.WriteFile(planFile, []byte("{not json"), 0o644)
	if out, code := cli("", "reassign", "execute", "--plan", planFile); code != 2 {
		t.Fatalf("invalid plan: exit %d\n%s", code, out)
	}
	// Records survive the reassignment and the leader moves.
	got = must("", "consume", "orders", "--from-beginning", "--max-messages", "50", "--timeout", "10s")
	if strings.Count(got, "order-") != 50 {
		t.Fatalf("after reassignment: %d records\n%s", strings.Count(got, "order-"), got)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
