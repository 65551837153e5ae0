package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a server under test running as a child process, so that its
// CPU and memory are its own and the load comes from another process, as
// it would in production.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	tail *tailBuffer
	// Base is the server's URL, http://host:port.
	Base string
}

// StartOptions says how to start a server and how to tell it is listening.
type StartOptions struct {
	Path string
	Args []string
	Env  []string
	// ReadyMsg is the msg of the JSON log line on stderr that announces
	// the listen address in its addr field; empty means the address is
	// known in advance and given as Base.
	ReadyMsg string
	Base     string
	Timeout  time.Duration
}

// Start runs the server and returns once it has announced its address.
func Start(ctx context.Context, o StartOptions) (*Process, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Env = o.Env
	p := &Process{cmd: cmd, done: make(chan struct{}), tail: &tailBuffer{max: 16 << 10}, Base: o.Base}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = p.tail
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go p.watch(stderr, o.ReadyMsg, addr)
	go func() { cmd.Wait(); close(p.done) }()
	if o.ReadyMsg == "" {
		return p, nil
	}
	t := time.NewTimer(o.Timeout)
	defer t.Stop()
	select {
	case p.Base = <-addr:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening:\n%s", o.Path, p.tail)
	case <-t.C:
		p.Kill()
		return nil, fmt.Errorf("%s did not announce its address within %s:\n%s", o.Path, o.Timeout, p.tail)
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// watch reads the log for the ready line, then only keeps its tail: parsing
// every line of a server logging thousands a second would load the machine
// the benchmark is measuring.
func (p *Process) watch(r io.Reader, readyMsg string, addr chan<- string) {
	br := bufio.NewReaderSize(r, 64<<10)
	if readyMsg != "" {
		for {
			line, err := br.ReadBytes('\n')
			p.tail.Write(line)
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == readyMsg && rec.Addr != "" {
				if !strings.Contains(rec.Addr, "://") {
					rec.Addr = "http://" + rec.Addr
				}
				addr <- rec.Addr
				break
			}
			if err != nil {
				return
			}
		}
	}
	io.Copy(p.tail, br)
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs returns the end of what the process wrote.
func (p *Process) Logs() string { return p.tail.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process at once and waits for it.
func (p *Process) Kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the process to shut down and kills it if it has not within grace.
func (p *Process) Stop(grace time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	}
}

// Memory is a process's resident memory in MiB: now and the peak so far
// (VmRSS and VmHWM from /proc/<pid>/status).
type Memory struct {
	RSSMB  float64 `json:"rssMB"`
	PeakMB float64 `json:"peakMB"`
}

// ReadMemory reads the process's resident memory from /proc.
func (p *Process) ReadMemory() (Memory, error) { return ReadMemory(p.Pid()) }

// ReadMemory reads a process's resident memory from /proc.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			m.RSSMB = kb / 1024
		} else {
			m.PeakMB = kb / 1024
		}
	}
	return m, nil
}

// CPUTime returns the CPU time (user and system) the process has used so
// far, from /proc/<pid>/stat.
func (p *Process) CPUTime() (time.Duration, error) { return CPUTime(p.Pid()) }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times, which Linux
// fixes at 100 on every architecture Go supports.
const clockTicks = 100

// CPUTime returns the CPU time (user and system) process pid has used.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// SampleMemory reads the resident memory every interval until the returned
// function is called, which returns the largest VmRSS seen.
func (p *Process) SampleMemory(interval time.Duration) func() float64 {
	done := make(chan struct{})
	peak := make(chan float64, 1)
	go func() {
		var top float64
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if m, err := p.ReadMemory(); err == nil {
				top = max(top, m.RSSMB)
			}
			select {
			case <-done:
				peak <- top
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 { close(done); return <-peak }
}

// FreeAddr returns a loopback address with a port free at the moment, for
// a server that must be told its port before it starts.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// TimeToReady starts a process and measures from just before exec until
// url first answers 200, polling every half millisecond. The process is
// left running for the caller to inspect and stop.
func TimeToReady(ctx context.Context, o StartOptions, url string) (time.Duration, *Process, error) {
	o.ReadyMsg = ""
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	p, err := Start(ctx, o)
	if err != nil {
		return 0, nil, err
	}
	deadline := start.Add(max(o.Timeout, 10*time.Second))
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), p, nil
			}
		}
		if p.Exited() {
			return 0, nil, fmt.Errorf("%s exited before answering:\n%s", o.Path, p.Logs())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return 0, nil, errors.Join(errors.New("no 200 from "+url+" in time"), ctx.Err())
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	// Trimming only once the buffer doubles keeps a busy log's cost per
	// byte constant.
	if over := len(t.b) - t.max; len(t.b) > 2*t.max {
		// Cut at a line boundary so the tail reads cleanly.
		if i := bytes.IndexByte(t.b[over:], '\n'); i >= 0 {
			over += i + 1
		}
		t.b = append(t.b[:0], t.b[min(over, len(t.b)):]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
