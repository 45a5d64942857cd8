package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// prepareProcess checks what the run needs of this machine before it starts: readable
// --pid and --redis-pid, and enough file descriptors, raising the limit as far as it goes.
func prepareProcess(cfg config, stderr io.Writer) error {
	if err := checkPIDs(cfg); err != nil {
		return err
	}
	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintln(stderr, "switchboard-load: warning: raising the open file limit:", err)
	}
	return checkFileLimit(limit, max(cfg.users, cfg.members, cfg.conns)+cfg.publishers)
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, so that 10,000+ sockets
// can be open, and returns the limit now in force.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, err
		}
	}
	return lim.Cur, nil
}

// checkFileLimit refuses a run that needs more sockets than the process may open.
func checkFileLimit(limit uint64, conns int) error {
	need := uint64(conns) + 256 // HTTP clients, Go runtime, headroom
	if limit < need {
		return fmt.Errorf("the run needs about %d file descriptors but the limit is %d: raise it (ulimit -Hn, or LimitNOFILE in systemd)", need, limit)
	}
	return nil
}

// checkPIDs refuses --pid or --redis-pid values whose /proc entries cannot be read, so that
// a typo fails before the run rather than as "not measured" after it.
func checkPIDs(cfg config) error {
	for _, p := range []struct {
		flag string
		pid  int
	}{{"--pid", cfg.pid}, {"--redis-pid", cfg.redisPID}} {
		if p.pid > 0 {
			if s := sampleProc(p.pid); s.err != nil {
				return fmt.Errorf("%s %d: %w", p.flag, p.pid, s.err)
			}
		}
	}
	return nil
}

// portRangeWarning returns a warning when connsPerTarget connections to one address would
// exhaust the local ephemeral ports of one source address.
func portRangeWarning(connsPerTarget int) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return ""
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || connsPerTarget <= hi-lo+1 {
		return ""
	}
	return fmt.Sprintf("%d connections to one address need more than the %d local ports of one source address (%d-%d, net.ipv4.ip_local_port_range): dials will fail with EADDRNOTAVAIL. Spread them: list the node several times with different loopback addresses (--url http://127.0.0.1:8080,http://127.0.0.2:8080 with the node listening on 0.0.0.0), or widen the range", connsPerTarget, hi-lo+1, lo, hi)
}

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	at  time.Time
	rss int64 // bytes
	cpu time.Duration
	err error
}

// sampleProc reads VmRSS from /proc/<pid>/status and utime+stime from /proc/<pid>/stat.
func sampleProc(pid int) procSample {
	s := procSample{at: time.Now()}
	if pid <= 0 {
		s.err = errors.New("no pid")
		return s
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		s.err = err
		return s
	}
	if s.rss, err = parseVmRSS(status); err != nil {
		s.err = err
		return s
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		s.err = err
		return s
	}
	s.cpu, s.err = parseStatCPU(stat)
	return s
}

// parseVmRSS returns the VmRSS line of /proc/<pid>/status in bytes.
func parseVmRSS(status []byte) (int64, error) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// parseStatCPU returns utime+stime of /proc/<pid>/stat. The command name, field 2, is in
// parentheses and may hold spaces, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed CPU times in /proc/<pid>/stat")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// sampleSelf reads this process's RSS and its CPU time, the latter from getrusage, which
// is finer than /proc's ticks.
func sampleSelf() procSample {
	s := sampleProc(os.Getpid())
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if s.err != nil && s.rss == 0 {
			s.err = nil // CPU is what matters for the tool itself
		}
	}
	return s
}

// procReport compares two samples of one process over the measured phase: ops is what the
// phase did (messages delivered, connections opened), to give CPU per operation; conns is
// how many connections the RSS difference is for, 0 when RSS per connection means nothing.
func procReport(pid int, before, after procSample, ops int64, conns int) *ProcReport {
	r := &ProcReport{PID: pid}
	if err := errors.Join(before.err, after.err); err != nil {
		r.Error = err.Error()
		return r
	}
	r.RSSBeforeMB = round1(float64(before.rss) / (1 << 20))
	r.RSSAfterMB = round1(float64(after.rss) / (1 << 20))
	if conns > 0 {
		r.RSSPerConnKB = round1(float64(after.rss-before.rss) / 1024 / float64(conns))
	}
	cpu := after.cpu - before.cpu
	r.CPUSeconds = round3(cpu.Seconds())
	if wall := after.at.Sub(before.at); wall > 0 {
		r.CPUCores = round3(cpu.Seconds() / wall.Seconds())
	}
	if ops > 0 {
		r.CPUPerOpMicros = round1(float64(cpu.Microseconds()) / float64(ops))
	}
	return r
}

// procWatch samples the processes a run measures: the server and Redis when their pids
// were given, and the tool itself.
type procWatch struct {
	server, redis, self procSample
	wireIn              int64 // the WebSockets' bytes read so far
}

func watchProcs(cfg config) procWatch {
	w := procWatch{self: sampleSelf()}
	if cfg.wireIn != nil {
		w.wireIn = cfg.wireIn.Load()
	}
	if cfg.pid > 0 {
		w.server = sampleProc(cfg.pid)
	}
	if cfg.redisPID > 0 {
		w.redis = sampleProc(cfg.redisPID)
	}
	return w
}

// fill sets res's process reports from the samples before and now.
func (w procWatch) fill(res *Result, cfg config, ops int64, conns int) {
	now := watchProcs(cfg)
	if cfg.pid > 0 {
		res.Server = procReport(cfg.pid, w.server, now.server, ops, conns)
	}
	if cfg.redisPID > 0 {
		res.Redis = procReport(cfg.redisPID, w.redis, now.redis, ops, 0)
	}
	res.Tool = procReport(os.Getpid(), w.self, now.self, ops, conns)
	if cfg.wireIn != nil {
		res.Wire = wireReport(now.wireIn-w.wireIn, ops, cfg.compression)
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// loadAverage returns the 1-minute load average, 0 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
