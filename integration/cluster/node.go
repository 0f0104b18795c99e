package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratalog/strata/integration/netproxy"
)

// Node is one `strata server` process: its ports, its proxies, its data
// directory (kept across restarts) and its log file (appended across
// restarts, each start marked).
type Node struct {
	c    *Cluster
	ID   int32
	Name string // "c1" controller, "b1" broker, "n1" combined
	// Roles is the --roles value.
	Roles string
	Dir   string // data directory
	Log   string // stdout+stderr of every start

	// Real listen addresses; peers and clients use the proxies in front.
	CtrlAddr, BrokerAddr, MetricsAddr string
	CtrlProxy, BrokerProxy            *netproxy.Proxy // nil for a role it does not have

	mu struct {
		sync.Mutex
		cmd      *exec.Cmd
		exited   chan struct{}
		waitErr  error
		expected bool // the harness stopped it: an exit is no surprise
		paused   bool
		starts   int
	}
}

// IsController and IsBroker report the node's roles.
func (n *Node) IsController() bool { return n.CtrlProxy != nil }
func (n *Node) IsBroker() bool     { return n.BrokerProxy != nil }

func (n *Node) String() string { return n.Name }

// args is the command line of the node.
func (n *Node) args() []string {
	a := []string{"server", "--node-id", fmt.Sprint(n.ID), "--roles", n.Roles, "--data-dir", n.Dir,
		"--metrics-addr", n.MetricsAddr, "--quorum", n.c.quorum(), "--raft-timeouts", n.c.cfg.RaftTimeouts,
		"--broker-session-timeout", n.c.cfg.SessionTimeout.String(), "--log-level", n.c.cfg.LogLevel}
	if n.IsController() {
		a = append(a, "--controller-addr", n.CtrlAddr, "--advertise-addr", n.CtrlProxy.Addr())
	}
	if n.IsBroker() {
		a = append(a, "--broker-addr", n.BrokerAddr, "--broker-advertise-addr", n.BrokerProxy.Addr())
	}
	return a
}

// Start starts the process (a no-op error if it runs). It does not wait
// for readiness: see WaitReady.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cmd != nil {
		return fmt.Errorf("cluster: %s already running (pid %d)", n.Name, n.mu.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.mu.starts++
	fmt.Fprintf(logf, "===== harness: start %d of %s at %s: strata %s\n", n.mu.starts, n.Name,
		time.Now().UTC().Format("15:04:05.000"), strings.Join(n.args(), " "))
	cmd := exec.Command(n.c.cfg.Binary, n.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (kill -9 of the group), and SIGKILL when the
	// test binary dies, whatever the way.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	n.mu.cmd, n.mu.exited, n.mu.expected, n.mu.paused, n.mu.waitErr = cmd, exited, false, false, nil
	n.c.track(n, cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.mu.waitErr = err
		if n.mu.cmd == cmd {
			n.mu.cmd = nil
		}
		n.mu.Unlock()
		n.c.untrack(cmd.Process.Pid)
		close(exited)
		if !n.wasExpected() {
			n.c.unexpectedExit(n, err)
		}
	}()
	return nil
}

func (n *Node) wasExpected() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.expected
}

// Pid is the running process's pid, 0 when it is not running.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cmd == nil {
		return 0
	}
	return n.mu.cmd.Process.Pid
}

// Running reports whether the process is running (paused counts).
func (n *Node) Running() bool { return n.Pid() != 0 }

// Paused reports whether the node is SIGSTOPped.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.paused
}

// signal sends sig to the node's process group; expectExit marks an exit
// that follows as the harness's doing.
func (n *Node) signal(sig syscall.Signal, expectExit bool) (chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cmd == nil {
		return nil, fmt.Errorf("cluster: %s is not running", n.Name)
	}
	if expectExit {
		n.mu.expected = true
	}
	pid := n.mu.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil {
		return nil, fmt.Errorf("cluster: signal %v to %s: %w", sig, n.Name, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.mu.paused = true
	case syscall.SIGCONT:
		n.mu.paused = false
	}
	return n.mu.exited, nil
}

// Kill is kill -9 of the node's process group; it returns once the process
// is gone.
func (n *Node) Kill() error {
	exited, err := n.signal(syscall.SIGKILL, true)
	if err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s still running 10 s after SIGKILL", n.Name)
	}
}

// Stop sends SIGTERM (a controlled shutdown) and waits up to timeout, then
// SIGKILLs. It returns the process's exit error (nil: a clean exit).
func (n *Node) Stop(timeout time.Duration) error {
	n.mu.Lock()
	wasPaused := n.mu.paused
	n.mu.Unlock()
	exited, err := n.signal(syscall.SIGTERM, true)
	if err != nil {
		return err
	}
	if wasPaused {
		n.signal(syscall.SIGCONT, true)
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		n.signal(syscall.SIGKILL, true)
		<-exited
		return fmt.Errorf("cluster: %s did not stop within %v of SIGTERM", n.Name, timeout)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.waitErr
}

// Pause is SIGSTOP; Resume is SIGCONT.
func (n *Node) Pause() error  { _, err := n.signal(syscall.SIGSTOP, false); return err }
func (n *Node) Resume() error { _, err := n.signal(syscall.SIGCONT, false); return err }

// Restart is Kill (if running) then Start.
func (n *Node) Restart() error {
	if n.Running() {
		if err := n.Kill(); err != nil {
			return err
		}
	}
	return n.Start()
}

// Ready reports whether /readyz answers 200.
func (n *Node) Ready(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.MetricsAddr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var b [256]byte
	k, _ := resp.Body.Read(b[:])
	return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(b[:k]))
}

// WaitReady waits until /readyz answers 200 or ctx ends; it fails early if
// the process exits.
func (n *Node) WaitReady(ctx context.Context) error {
	why := ""
	for {
		n.mu.Lock()
		exited := n.mu.exited
		running := n.mu.cmd != nil
		n.mu.Unlock()
		if !running {
			return fmt.Errorf("cluster: %s is not running", n.Name)
		}
		var ok bool
		if ok, why = n.Ready(ctx); ok {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("cluster: %s exited while starting (see its log)", n.Name)
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %s: %w", n.Name, why, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RSS is the resident set size of the running process in bytes.
func (n *Node) RSS() (int64, error) {
	pid := n.Pid()
	if pid == 0 {
		return 0, errors.New("cluster: not running")
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10, nil
		}
	}
	return 0, errors.New("cluster: no VmRSS in /proc status")
}
