package attack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis master with replicas watched by Sentinels (scripts/test.sh starts one and
// exports GMGATE_REDIS_SENTINEL_ADDRS, _MASTER and _PASSWORD), on which a test stages the
// failover that loses writes: replicas cut off from the master, the master killed, a replica
// without the master's last writes promoted. Asynchronous replication loses the same writes
// when a master dies with its replicas lagging.
type Sentinel struct {
	Addrs    []string // the Sentinels
	Master   string   // the master name they monitor
	Password string   // the Sentinels' requirepass
}

// SentinelFromEnv reads the setup of scripts/test.sh; ok is false when it is not configured.
func SentinelFromEnv() (s *Sentinel, ok bool) {
	addrs := os.Getenv("GMGATE_REDIS_SENTINEL_ADDRS")
	if addrs == "" {
		return nil, false
	}
	return &Sentinel{Addrs: strings.Split(addrs, ","), Master: os.Getenv("GMGATE_REDIS_SENTINEL_MASTER"),
		Password: os.Getenv("GMGATE_REDIS_SENTINEL_PASSWORD")}, true
}

func (s *Sentinel) client() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: s.Addrs[0], Password: s.Password, MaxRetries: -1})
}

// MasterAddr returns the master's address as the Sentinels see it.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := s.client()
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// WaitHealthy waits until the Sentinels have their quorum and agree on a master with at least
// replicas online replicas.
func (s *Sentinel) WaitHealthy(ctx context.Context, replicas int, timeout time.Duration) error {
	sc := s.client()
	defer sc.Close()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		if _, err := sc.CkQuorum(ctx, s.Master).Result(); err != nil {
			why = fmt.Sprint("ckquorum: ", err)
		} else if addr, err := s.MasterAddr(ctx); err != nil {
			why = fmt.Sprint("master address: ", err)
		} else {
			m := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			info, err := m.Info(ctx, "replication").Result()
			m.Close()
			if err == nil && strings.Contains(info, "role:master") && strings.Count(info, "state=online") >= replicas {
				return nil
			}
			why = fmt.Sprintf("master %s: %v %s", addr, err, info)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("attack: the Sentinel setup is not healthy after %v: %s", timeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Failover is a failover being staged on a Sentinel setup.
type Failover struct {
	s          *Sentinel
	MasterAddr string        // the master at the start
	Master     *redis.Client // a direct client of it
	Replicas   []string      // its replicas at the start
	pid        int
	argv       []string
}

// StageFailover finds the master, its process, its command line and its replicas (at least
// minReplicas). scripts/test.sh writes each server's command line to <its dir>/argv, since
// redis-server rewrites its own.
func (s *Sentinel) StageFailover(ctx context.Context, minReplicas int) (*Failover, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	f := &Failover{s: s, MasterAddr: addr, Master: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})}
	info, err := f.Master.Info(ctx, "server", "replication").Result()
	if err != nil {
		f.Close()
		return nil, err
	}
	f.pid, _ = strconv.Atoi(infoField(info, "process_id"))
	dir, err := f.Master.ConfigGet(ctx, "dir").Result()
	if err != nil || f.pid <= 0 {
		f.Close()
		return nil, fmt.Errorf("attack: master %s: process %d: %v", addr, f.pid, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir["dir"], "argv"))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("attack: master %s: its command line: %w", addr, err)
	}
	f.argv = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	for i := 0; ; i++ {
		p := strings.Split(infoField(info, fmt.Sprint("slave", i)), ",")
		if len(p) < 2 {
			break
		}
		f.Replicas = append(f.Replicas, net.JoinHostPort(strings.TrimPrefix(p[0], "ip="), strings.TrimPrefix(p[1], "port=")))
	}
	if len(f.Replicas) < minReplicas {
		f.Close()
		return nil, fmt.Errorf("attack: master %s has %d replicas, want %d", addr, len(f.Replicas), minReplicas)
	}
	return f, nil
}

// CutReplicas points every replica at a dead address, keeping its data: from then on the
// master's writes reach none of them. It returns once the master sees no replica.
func (f *Failover) CutReplicas(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dead := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for _, a := range f.Replicas {
		r := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		err := r.Do(ctx, "REPLICAOF", "127.0.0.1", dead).Err()
		r.Close()
		if err != nil {
			return fmt.Errorf("attack: cutting replica %s off: %w", a, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, err := f.Master.Info(ctx, "replication").Result()
		if err == nil && infoField(info, "connected_slaves") == "0" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("attack: the master still sees replicas")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// KillMaster kills the master process (SIGKILL: a crash, nothing flushed).
func (f *Failover) KillMaster() error { return syscall.Kill(f.pid, syscall.SIGKILL) }

// Promoted reports the new master once the Sentinels have promoted one of the replicas.
func (f *Failover) Promoted(ctx context.Context) (string, bool) {
	a, err := f.s.MasterAddr(ctx)
	return a, err == nil && slices.Contains(f.Replicas, a)
}

// Restart starts the killed master again with its command line (same port, directory and
// pidfile); the Sentinels make it a replica of the new master.
func (f *Failover) Restart() error {
	cmd := exec.Command(f.argv[0], f.argv[1:]...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reaped if it exits while the test process runs
	return nil
}

// Close closes the client of the old master.
func (f *Failover) Close() { f.Master.Close() }

// infoField returns field of an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}
