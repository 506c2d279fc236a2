package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmgate/gmgate/internal/attack"
)

// Tests of the Redis store against the deployments payment platforms run: a Redis Cluster, a
// Sentinel-managed master (with a failover), an ACL user, TLS. scripts/test.sh starts the Cluster
// and the Sentinel setup and exports their addresses; these tests fail without them under
// GMGATE_REQUIRE_SERVICES=1 and skip otherwise.

// redisEnv returns the comma-separated addresses in the environment variable name.
func redisEnv(t *testing.T, name, what string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if redisRequired() {
			t.Fatalf("%s unset and GMGATE_REQUIRE_SERVICES=1: %s is required (scripts/test.sh starts it)", name, what)
		}
		t.Skipf("%s unset: no %s (scripts/test.sh starts one)", name, what)
	}
	return strings.Split(v, ",")
}

// clusterConfig is the RedisConfig of the test Cluster.
func clusterConfig(t *testing.T) *RedisConfig {
	return &RedisConfig{Mode: RedisCluster, Addrs: redisEnv(t, "GMGATE_REDIS_CLUSTER_ADDRS", "Redis Cluster")}
}

// newHAStore returns a store of its own client for conf.
func newHAStore(t *testing.T, conf *RedisConfig, prefix string, acks int) *RedisReplayStore {
	t.Helper()
	c, err := conf.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewRedisReplayStore(RedisReplayOptions{Client: c, Prefix: prefix, ReplicaAcks: acks, CloseClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// clusterNodes returns a direct client (no redirections) to each master of the Cluster, by
// address, and the address serving each slot.
func clusterNodes(t *testing.T, conf *RedisConfig) (map[string]*redis.Client, func(slot int64) string) {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: conf.Addrs})
	defer cc.Close()
	slots, err := cc.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*redis.Client{}
	for _, s := range slots {
		a := s.Nodes[0].Addr
		if nodes[a] == nil {
			nodes[a] = redis.NewClient(&redis.Options{Addr: a})
			t.Cleanup(func() { nodes[a].Close() })
		}
	}
	return nodes, func(slot int64) string {
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) {
				return s.Nodes[0].Addr
			}
		}
		return ""
	}
}

// TestRedisClusterExactlyOnce: two stores with clients of their own share a real 3-master
// Cluster; every nonce sent many times concurrently to both is accepted exactly once; the nonces
// are spread over every master, and each key is on the master of its slot (a direct EXISTS on
// that node, without redirection, finds it).
func TestRedisClusterExactlyOnce(t *testing.T) {
	conf := clusterConfig(t)
	prefix := fmt.Sprintf("gmgate-test:cluster:%d:", time.Now().UnixNano())
	stores := []*RedisReplayStore{newHAStore(t, conf, prefix, 0), newHAStore(t, conf, prefix, 0)}
	const nonces, perStore = 60, 6
	var accepted [nonces]atomic.Int32
	var wg sync.WaitGroup
	for _, st := range stores {
		for w := 0; w < perStore; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < nonces; i++ {
					err := st.CheckAndStore(context.Background(), "merchant-1", fmt.Sprint("n-", i), time.Minute)
					switch {
					case err == nil:
						accepted[i].Add(1)
					case !errors.Is(err, ErrReplay):
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	nodes, slotNode := clusterNodes(t, conf)
	if len(nodes) != 3 {
		t.Fatalf("the Cluster has %d masters, want 3", len(nodes))
	}
	perNode := map[string]int{}
	ctx := context.Background()
	for i := range accepted {
		if n := accepted[i].Load(); n != 1 {
			t.Fatalf("nonce %d accepted %d times, want exactly 1", i, n)
		}
		key := stores[0].Key("merchant-1", fmt.Sprint("n-", i))
		slot, err := nodes[slotNode(0)].ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		addr := slotNode(slot)
		if n, err := nodes[addr].Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("key of nonce %d is not on %s, the master of its slot %d: %d %v", i, addr, slot, n, err)
		}
		perNode[addr]++
	}
	if len(perNode) != 3 {
		t.Fatalf("nonces on %d masters, want all 3: %v", len(perNode), perNode)
	}
}

// TestRedisClusterWaitOnTheKeysMaster: with replica acknowledgements the SET and its WAIT go to
// the master of the key's slot, on one connection: WAIT runs on that master only (its
// cmdstat_wait grows, the other masters' do not), and since these masters have no replica the
// check fails closed, the nonce stored but refused.
func TestRedisClusterWaitOnTheKeysMaster(t *testing.T) {
	conf := clusterConfig(t)
	conf.Timeout = 2 * time.Second // WAIT: 1 s, and a second for the rest on a busy machine
	prefix := fmt.Sprintf("gmgate-test:cluster-wait:%d:", time.Now().UnixNano())
	st := newHAStore(t, conf, prefix, 1)
	nodes, slotNode := clusterNodes(t, conf)
	ctx := context.Background()
	waits := func() map[string]int64 {
		m := map[string]int64{}
		for a, c := range nodes {
			info, err := c.Info(ctx, "commandstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(info, "\n") {
				if rest, ok := strings.CutPrefix(line, "cmdstat_wait:calls="); ok {
					m[a], _ = strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				}
			}
		}
		return m
	}
	// Warm up: the Cluster's slot map and a first connection.
	if err := st.CheckAndStore(ctx, "k", "warm-up", time.Minute); !errors.Is(err, ErrReplayStoreUnavailable) {
		t.Fatalf("warm-up check: %v", err)
	}
	for i := 0; i < 4; i++ {
		nonce := fmt.Sprint("w-", i)
		key := st.Key("k", nonce)
		before := waits()
		err := st.CheckAndStore(ctx, "k", nonce, time.Minute)
		if !errors.Is(err, ErrReplayStoreUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
			t.Fatalf("check without a replica to acknowledge = %v, want a refusal (0 of 1 replicas)", err)
		}
		after := waits()
		slot, _ := nodes[slotNode(0)].ClusterKeySlot(ctx, key).Result()
		owner := slotNode(slot)
		for a := range nodes {
			want := before[a]
			if a == owner {
				want++
			}
			if after[a] != want {
				t.Fatalf("nonce %d (slot %d, master %s): WAIT calls on %s went %d -> %d", i, slot, owner, a, before[a], after[a])
			}
		}
		if n, _ := nodes[owner].Exists(ctx, key).Result(); n != 1 {
			t.Fatalf("nonce %d not stored on %s", i, owner)
		}
		// Refused, never accepted: the same request again is a replay, not a second chance.
		if err := st.CheckAndStore(ctx, "k", nonce, time.Minute); !errors.Is(err, ErrReplay) {
			t.Fatalf("nonce %d again = %v, want ErrReplay", i, err)
		}
	}
}

// TestRedisACLUser: an ACL user allowed only SET and WAIT on the store's keys works; a wrong
// password and a user without access to the keys fail closed (ErrReplayStoreUnavailable), and
// the error carries no password.
func TestRedisACLUser(t *testing.T) {
	addr := sharedRedisAddr(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	run := time.Now().UnixNano()
	user, password := fmt.Sprintf("gmgate-test-%d", run), fmt.Sprintf("pw-%d-secret", run)
	prefix := fmt.Sprintf("gmgate-acl:%d:", run)
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+password, "resetkeys", "~"+prefix+"*",
		"resetchannels", "-@all", "+set", "+wait").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	conf := &RedisConfig{Addrs: []string{addr}, Username: user, Password: password}
	st := newHAStore(t, conf, prefix, 0)
	if err := st.CheckAndStore(ctx, "k", "n1", time.Minute); err != nil {
		t.Fatalf("ACL user: %v", err)
	}
	if err := st.CheckAndStore(ctx, "k", "n1", time.Minute); !errors.Is(err, ErrReplay) {
		t.Fatalf("ACL user, same nonce = %v, want ErrReplay", err)
	}
	if n, _ := admin.Exists(ctx, st.Key("k", "n1")).Result(); n != 1 {
		t.Fatal("the ACL user's nonce is not in Redis")
	}
	for _, tc := range []struct {
		name string
		conf *RedisConfig
		pfx  string
	}{
		{"wrong password", &RedisConfig{Addrs: []string{addr}, Username: user, Password: password + "x"}, prefix},
		{"no such user", &RedisConfig{Addrs: []string{addr}, Username: user + "x", Password: password}, prefix},
		{"keys outside the user's pattern", conf, "gmgate-other:"},
	} {
		st := newHAStore(t, tc.conf, tc.pfx, 0)
		err := st.CheckAndStore(ctx, "k", "n2", time.Minute)
		if !errors.Is(err, ErrReplayStoreUnavailable) {
			t.Fatalf("%s: %v, want ErrReplayStoreUnavailable", tc.name, err)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatalf("%s: the error shows the password: %v", tc.name, err)
		}
		g := &ReplayGuard{Store: st}
		if err := g.Check(ctx, "k", "n3", time.Now()); !errors.Is(err, ErrReplayStoreUnavailable) {
			t.Fatalf("%s: guard = %v, want a refusal", tc.name, err)
		}
	}
}

// TestRedisClusterACLUser: on a Cluster, an ACL user with only SET, WAIT and CLUSTER SLOTS (to
// find the slots' masters) on the store's keys works, as docs/verify.md says; without CLUSTER
// SLOTS the store fails closed.
func TestRedisClusterACLUser(t *testing.T) {
	conf := clusterConfig(t)
	ctx := context.Background()
	run := time.Now().UnixNano()
	user, password := fmt.Sprintf("gmgate-test-%d", run), fmt.Sprintf("pw-%d", run)
	prefix := fmt.Sprintf("gmgate-acl:%d:", run)
	nodes, _ := clusterNodes(t, conf)
	setUser := func(perms ...string) {
		for _, n := range nodes {
			args := append([]any{"ACL", "SETUSER", user, "reset", "on", ">" + password, "~" + prefix + "*", "resetchannels", "-@all"}, toAny(perms)...)
			if err := n.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Do(context.Background(), "ACL", "DELUSER", user)
		}
	})
	acl := *conf
	acl.Username, acl.Password = user, password
	setUser("+set", "+wait")
	if err := newHAStore(t, &acl, prefix, 0).CheckAndStore(ctx, "k", "n0", time.Minute); !errors.Is(err, ErrReplayStoreUnavailable) {
		t.Fatalf("without CLUSTER SLOTS: %v, want ErrReplayStoreUnavailable", err)
	}
	setUser("+set", "+wait", "+cluster|slots")
	st := newHAStore(t, &acl, prefix, 0)
	for i := 0; i < 12; i++ { // over every master
		if err := st.CheckAndStore(ctx, "k", fmt.Sprint("n-", i), time.Minute); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
		if err := st.CheckAndStore(ctx, "k", fmt.Sprint("n-", i), time.Minute); !errors.Is(err, ErrReplay) {
			t.Fatalf("nonce %d again: %v", i, err)
		}
	}
}

func toAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

// testCA is a certificate authority made for a test, with a leaf issuer.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf certificate and key for cn (and 127.0.0.1) to dir/name.{pem,key}.
func (ca *testCA) issue(t *testing.T, dir, name, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cn}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRedisTLS: a redis-server of the test's own listening with TLS only and requiring client
// certificates (tls-auth-clients yes). The store connects with the right roots and client
// certificate; a wrong root, a missing client certificate, a wrong server name or plain TCP
// fail closed. Debian's redis-server is built with TLS.
func TestRedisTLS(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if redisRequired() {
			t.Fatalf("redis-server not found and GMGATE_REQUIRE_SERVICES=1: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	ca, other := newTestCA(t, "redis test CA"), newTestCA(t, "another CA")
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	os.WriteFile(otherFile, other.pem, 0o600)
	srvCert, srvKey := ca.issue(t, dir, "server", "redis.test", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, dir, "client", "gmgate", x509.ExtKeyUsageClientAuth)
	port := freeTCPPort(t)
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "yes", "--tls-protocols", "TLSv1.2 TLSv1.3",
		"--save", "", "--appendonly", "no", "--dir", dir)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	good := &RedisConfig{Addrs: []string{addr}, TLS: &RedisTLS{RootFiles: []string{caFile}, CertFile: cliCert, KeyFile: cliKey}}
	st := newHAStore(t, good, "gmgate-tls:", 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := st.CheckAndStore(context.Background(), "k", "n1", time.Minute)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS with the right roots and client certificate: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := st.CheckAndStore(context.Background(), "k", "n1", time.Minute); !errors.Is(err, ErrReplay) {
		t.Fatalf("TLS, same nonce = %v, want ErrReplay", err)
	}
	named := *good
	named.TLS = &RedisTLS{RootFiles: []string{caFile}, CertFile: cliCert, KeyFile: cliKey, ServerName: "redis.test"}
	if err := newHAStore(t, &named, "gmgate-tls:", 0).CheckAndStore(context.Background(), "k", "n2", time.Minute); err != nil {
		t.Fatalf("TLS with server_name redis.test: %v", err)
	}
	for _, tc := range []struct {
		name string
		tls  *RedisTLS
	}{
		{"another root", &RedisTLS{RootFiles: []string{otherFile}, CertFile: cliCert, KeyFile: cliKey}},
		{"the system roots", &RedisTLS{CertFile: cliCert, KeyFile: cliKey}},
		{"no client certificate", &RedisTLS{RootFiles: []string{caFile}}},
		{"wrong server name", &RedisTLS{RootFiles: []string{caFile}, CertFile: cliCert, KeyFile: cliKey, ServerName: "other.test"}},
		{"plain TCP", nil},
	} {
		conf := &RedisConfig{Addrs: []string{addr}, TLS: tc.tls}
		if err := newHAStore(t, conf, "gmgate-tls:", 0).CheckAndStore(context.Background(), "k", "n3", time.Minute); !errors.Is(err, ErrReplayStoreUnavailable) {
			t.Fatalf("%s: %v, want ErrReplayStoreUnavailable", tc.name, err)
		}
	}
	// TLS 1.2 is the floor, whatever the server offers.
	c, err := (&RedisTLS{}).config()
	if err != nil || c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS floor %x, %v", c.MinVersion, err)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sentinelEnv returns the Sentinel setup of scripts/test.sh, healthy (a master with two online
// replicas; a failover test restores it so).
func sentinelEnv(t *testing.T) *attack.Sentinel {
	t.Helper()
	s, ok := attack.SentinelFromEnv()
	if !ok {
		redisEnv(t, "GMGATE_REDIS_SENTINEL_ADDRS", "Redis Sentinel setup") // fails or skips
	}
	if err := s.WaitHealthy(context.Background(), 2, 40*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRedisSentinelFailoverExactlyOnce: two stores with failover clients of their own, under
// load, while the master is killed (SIGKILL) and the Sentinels promote the replica. Every nonce
// is accepted at most once over both stores and the whole run (before, during and after the
// failover, every accepted nonce is also replayed after it); while no master is reachable
// checks are refused, never accepted. Just before the kill both replicas are cut off from the
// master (REPLICAOF to a dead address): writes the master accepts then never reach the replica
// that becomes master, the asynchronous-replication loss a failover causes. After the failover
// the other replica acknowledges for the new master. With the default
// replica acknowledgement (1 in sentinel mode) those nonces are refused, not accepted: none can
// be accepted again after the failover. (With ReplicaAcks 0, the nonce accepted in that window
// is accepted a second time after the failover.)
func TestRedisSentinelFailoverExactlyOnce(t *testing.T) {
	s := sentinelEnv(t)
	ctx := context.Background()
	conf := &RedisConfig{Mode: RedisSentinel, Addrs: s.Addrs, SentinelMaster: s.Master, SentinelPassword: s.Password}
	acks := conf.DefaultReplicaAcks()
	if acks != 1 {
		t.Fatalf("default replica acks in sentinel mode = %d, want 1", acks)
	}
	prefix := fmt.Sprintf("gmgate-test:sentinel:%d:", time.Now().UnixNano())
	stores := []*RedisReplayStore{newHAStore(t, conf, prefix, acks), newHAStore(t, conf, prefix, acks)}
	// Two replicas: one to promote, one to acknowledge for the new master after.
	f, err := s.StageFailover(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Cleanup(func() { // the setup as it was, for the next run: the old master back as a replica
		if err := f.Restart(); err != nil {
			t.Errorf("restarting the old master: %v", err)
		}
		if err := s.WaitHealthy(context.Background(), 2, 40*time.Second); err != nil {
			t.Error(err)
		}
	})

	// The load: fresh nonces to both stores at once, and every accepted nonce replayed.
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		outcomes = map[string]int{}
		phase    atomic.Int32 // 0 before the kill, 1 after it
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		seq      atomic.Int64
	)
	check := func(st *RedisReplayStore, nonce string) error {
		err := st.CheckAndStore(ctx, "merchant-1", nonce, time.Minute)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			accepted[nonce]++
			outcomes[fmt.Sprint("accepted/", phase.Load())]++
		case errors.Is(err, ErrReplay):
			outcomes["replay"]++
		case errors.Is(err, ErrReplayStoreUnavailable):
			outcomes[fmt.Sprint("unavailable/", phase.Load())]++
		default:
			t.Errorf("unexpected error %v", err)
		}
		return err
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				nonce := fmt.Sprint("load-", seq.Add(1))
				var inner sync.WaitGroup
				for _, st := range stores {
					inner.Add(1)
					go func() { defer inner.Done(); check(st, nonce) }()
				}
				inner.Wait()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("timed out waiting for %s; outcomes %v", what, outcomes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return outcomes[k] }
	waitFor("accepted nonces before the failover", func() bool { return count("accepted/0") >= 20 })

	// Cut the replicas off, store a nonce on the master alone, then kill the master.
	if err := f.CutReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	const lost = "written-to-the-master-alone"
	if err := check(stores[0], lost); !errors.Is(err, ErrReplayStoreUnavailable) {
		t.Fatalf("nonce stored while no replica can acknowledge it = %v, want a refusal", err)
	}
	if n, _ := f.Master.Exists(ctx, stores[0].Key("merchant-1", lost)).Result(); n != 1 {
		t.Fatal("the refused nonce is not on the master: the cut-off did not happen as planned")
	}
	phase.Store(1)
	if err := f.KillMaster(); err != nil {
		t.Fatal(err)
	}
	waitFor("refusals while no master is reachable", func() bool { return count("unavailable/1") >= 1 })
	waitFor("the Sentinels to promote a replica", func() bool { _, ok := f.Promoted(ctx); return ok })
	waitFor("acceptances after the failover", func() bool { return count("accepted/1") >= 20 })
	halt()

	// Every nonce accepted so far, sent again to both stores: replays, all of them.
	mu.Lock()
	seen := make([]string, 0, len(accepted))
	for n := range accepted {
		seen = append(seen, n)
	}
	mu.Unlock()
	for _, n := range seen {
		for _, st := range stores {
			check(st, n)
		}
	}
	// The refused nonce never reached the new master: it may now be accepted, once.
	for _, st := range stores {
		check(st, lost)
	}
	mu.Lock()
	defer mu.Unlock()
	for n, c := range accepted {
		if c > 1 {
			t.Errorf("nonce %s accepted %d times", n, c)
		}
	}
	if accepted[lost] != 1 {
		t.Errorf("the nonce refused before the failover was accepted %d times after it, want once", accepted[lost])
	}
	t.Logf("outcomes: %v", outcomes)
}
