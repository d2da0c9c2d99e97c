package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LoadBalancer is a private HAProxy in front of several registry nodes.
type LoadBalancer struct {
	Host string // 127.0.0.1:port, what clients use
	t    testing.TB
	log  string
}

// StartLoadBalancer starts HAProxy on a free loopback port, sending each
// HTTP request (not each connection) to the next of backends in turn, so
// that the chunks of one upload and the requests of one client reach
// different nodes. Health checks on /readyz take a dead node out of
// rotation; a request whose connection to a node fails is sent to another.
// It stops when the test ends.
func StartLoadBalancer(t testing.TB, backends ...string) *LoadBalancer {
	t.Helper()
	bin := LookTool(t, "haproxy")
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	lb := &LoadBalancer{Host: fmt.Sprintf("127.0.0.1:%d", port), t: t, log: filepath.Join(dir, "haproxy.log")}
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "    server node%d %s check inter 200ms fall 2 rise 1\n", i+1, b)
	}
	cfg := fmt.Sprintf(`global
    maxconn 4096
    pidfile %s

defaults
    mode http
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    timeout http-request 30s
    # Each request is balanced on its own, even on a kept-alive
    # client connection.
    option http-server-close
    option forwardfor
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend registry
    bind %s
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /readyz
%s`, filepath.Join(dir, "haproxy.pid"), lb.Host, servers.String())
	conf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(lb.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy log:\n%s", lb.Log())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", lb.Host, time.Second)
		if err == nil {
			c.Close()
			return lb
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited at start:\n%s", lb.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen on %s:\n%s", lb.Host, lb.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns HAProxy's output.
func (lb *LoadBalancer) Log() string {
	b, _ := os.ReadFile(lb.log)
	return string(b)
}
