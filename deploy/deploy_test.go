package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
	"github.com/switchboard-dev/switchboard/internal/wsclient"
)

// deployEnv is every environment variable the deployment files may set, each read by the
// binary and listed in docs/configuration.md. A deployment file that sets a
// SWITCHBOARD_* name the binary does not read sets nothing, silently.
var deployEnv = []string{
	"SWITCHBOARD_ADDR",
	"SWITCHBOARD_REDIS",
	"SWITCHBOARD_REDIS_CLUSTER",
	"SWITCHBOARD_JWT_SECRET",
	"SWITCHBOARD_API_KEY",
	"SWITCHBOARD_ADMIN_KEY",
	"SWITCHBOARD_ALLOWED_ORIGINS",
	"SWITCHBOARD_NODE_ID",
	"SWITCHBOARD_HISTORY_SIZE",
	"SWITCHBOARD_HISTORY_TTL",
	"SWITCHBOARD_MAX_MESSAGE_BYTES",
	"SWITCHBOARD_WEBHOOK_URL",
	"SWITCHBOARD_WEBHOOK_SECRET",
	"SWITCHBOARD_LOG_LEVEL",
	"SWITCHBOARD_INSECURE_DEV",
	"SWITCHBOARD_TRUSTED_PROXIES",
}

// serverPingInterval is how often the server pings every WebSocket (service.Config): any
// idle timeout in front of the nodes must be longer.
const serverPingInterval = 20 * time.Second

// drainTime bounds the node's drain after SIGTERM: WebSockets closed within 5 s (docs/protocol.md, "Delivery guarantees"),
// then up to 10 s for queued deliveries (cmd/switchboard).
const drainTime = 15 * time.Second

// root is the repository root; tests run in deploy/.
func root(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- compose.yaml -----------------------------------------------------------------------

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           any               `yaml:"build"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	DependsOn       any               `yaml:"depends_on"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	Healthcheck     *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// buildContext returns the service's build context, "" when it uses a prebuilt image.
func (s composeService) buildContext() string {
	switch b := s.Build.(type) {
	case string:
		return b
	case map[string]any:
		c, _ := b["context"].(string)
		return c
	}
	return ""
}

// dependsOn returns the services this one waits for, in either of compose's two forms.
func (s composeService) dependsOn() []string {
	var out []string
	switch d := s.DependsOn.(type) {
	case []any:
		for _, v := range d {
			out = append(out, fmt.Sprint(v))
		}
	case map[string]any:
		for k := range d {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// interpolation is compose's ${NAME}, ${NAME:-default} and ${NAME-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// resolved is what docker compose up gives a variable with nothing set in the environment
// or a .env file: its default.
func resolved(v string) string {
	return interpolation.ReplaceAllString(v, "$2")
}

func loadCompose(t testing.TB) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, "compose.yaml"), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

// switchboardNodes returns the compose services built from this repository, by name.
func switchboardNodes(c composeFile) []string {
	var nodes []string
	for name, s := range c.Services {
		if s.buildContext() == "." {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	return nodes
}

func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	nodes := switchboardNodes(c)

	t.Run("runs one Redis 7 that keeps its data and never evicts", func(t *testing.T) {
		r, ok := c.Services["redis"]
		if !ok {
			t.Fatal("no redis service")
		}
		if !strings.HasPrefix(r.Image, "redis:7") {
			t.Errorf("redis image %q, want redis:7", r.Image)
		}
		cmd := strings.Join(r.Command, " ")
		if !strings.Contains(cmd, "--appendonly yes") {
			t.Errorf("redis command %q: want AOF (--appendonly yes), room memberships are state", cmd)
		}
		if strings.Contains(cmd, "--maxmemory-policy") && !strings.Contains(cmd, "--maxmemory-policy noeviction") {
			t.Errorf("redis command %q: an eviction policy other than noeviction loses messages", cmd)
		}
		if r.Healthcheck == nil {
			t.Error("redis has no healthcheck for the nodes to wait on")
		}
	})

	t.Run("runs three Switchboard nodes with distinct node ids", func(t *testing.T) {
		if len(nodes) != 3 {
			t.Fatalf("services built from this repository: %v, want three", nodes)
		}
		seen := map[string]string{}
		for _, n := range nodes {
			id := resolved(c.Services[n].Environment["SWITCHBOARD_NODE_ID"])
			if id == "" {
				t.Errorf("%s: no SWITCHBOARD_NODE_ID", n)
			} else if other, dup := seen[id]; dup {
				t.Errorf("%s and %s share the node id %q", other, n, id)
			}
			seen[id] = n
		}
	})

	for _, n := range nodes {
		s := c.Services[n]
		env := s.Environment
		t.Run(n+" uses only environment variables the binary knows", func(t *testing.T) {
			for name := range env {
				if strings.HasPrefix(name, "SWITCHBOARD_") && !slices.Contains(deployEnv, name) {
					t.Errorf("%s sets %s, which the binary does not read", n, name)
				}
			}
		})
		t.Run(n+" uses the shared Redis", func(t *testing.T) {
			if got := resolved(env["SWITCHBOARD_REDIS"]); got != "redis://redis:6379/0" {
				t.Errorf("SWITCHBOARD_REDIS = %q, want redis://redis:6379/0", got)
			}
			if !slices.Contains(s.dependsOn(), "redis") {
				t.Errorf("%s does not depend on redis", n)
			}
		})
		t.Run(n+" is not in dev mode on its non-loopback address", func(t *testing.T) {
			// The image listens on 0.0.0.0; the binary will refuse dev mode there unless
			// told --insecure-dev, so the demo either has secrets or says so.
			if resolved(env["SWITCHBOARD_INSECURE_DEV"]) != "" {
				return
			}
			for _, name := range []string{"SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_API_KEY"} {
				if resolved(env[name]) == "" {
					t.Errorf("%s has no %s out of the box (and no SWITCHBOARD_INSECURE_DEV)", n, name)
				}
			}
		})
		t.Run(n+" has time to drain before SIGKILL", func(t *testing.T) {
			d, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil || d < drainTime {
				t.Errorf("stop_grace_period %q, want at least %v", s.StopGracePeriod, drainTime)
			}
		})
		t.Run(n+" has no healthcheck the distroless image cannot run", func(t *testing.T) {
			if s.Healthcheck != nil {
				t.Errorf("%s has a healthcheck %v: the image has no shell or curl; HAProxy checks /readyz", n, s.Healthcheck.Test)
			}
		})
		t.Run(n+" is reached only through the load balancer", func(t *testing.T) {
			if len(s.Ports) > 0 {
				t.Errorf("%s publishes %v: clients must go through the load balancer", n, s.Ports)
			}
		})
	}

	t.Run("puts HAProxy with deploy/haproxy.cfg in front on port 8080", func(t *testing.T) {
		lb, ok := c.Services["lb"]
		if !ok {
			t.Fatal("no lb service")
		}
		if !strings.HasPrefix(lb.Image, "haproxy:") {
			t.Errorf("lb image %q, want haproxy", lb.Image)
		}
		if !slices.ContainsFunc(lb.Volumes, func(v string) bool {
			return strings.HasPrefix(v, "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg")
		}) {
			t.Errorf("lb volumes %v do not mount ./deploy/haproxy.cfg", lb.Volumes)
		}
		if !slices.ContainsFunc(lb.Ports, func(p string) bool { return strings.HasSuffix(p, ":8080") }) {
			t.Errorf("lb ports %v do not publish 8080", lb.Ports)
		}
		if got := lb.dependsOn(); !slices.Equal(got, nodes) {
			t.Errorf("lb depends on %v, want %v", got, nodes)
		}
	})
}

// --- deploy/haproxy.cfg -----------------------------------------------------------------

// haproxySections maps each section header ("backend switchboard") to its lines, each
// split into fields with comments removed.
func haproxySections(cfg []byte) map[string][][]string {
	sections := map[string][][]string{}
	var current string
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			current = strings.Join(fields, " ")
			sections[current] = nil
			continue
		}
		sections[current] = append(sections[current], fields)
	}
	return sections
}

// directive returns the first line of a section that starts with the given words.
func directive(lines [][]string, words ...string) []string {
	for _, l := range lines {
		if len(l) >= len(words) && slices.Equal(l[:len(words)], words) {
			return l
		}
	}
	return nil
}

// haproxyDuration parses an HAProxy time: a number with an optional unit, milliseconds
// by default.
func haproxyDuration(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		s, i = s+"ms", len(s)
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[s[i:]]
	if unit == 0 {
		return 0, fmt.Errorf("bad time unit in %q", s)
	}
	return time.Duration(n) * unit, nil
}

func TestHAProxyConfig(t *testing.T) {
	cfg := readFile(t, "deploy/haproxy.cfg")
	sections := haproxySections(cfg)
	backend, ok := sections["backend switchboard"]
	if !ok {
		t.Fatal("no backend switchboard")
	}
	nodes := switchboardNodes(loadCompose(t))

	t.Run("routes to exactly the compose nodes on port 8080", func(t *testing.T) {
		var servers []string
		for _, l := range backend {
			if l[0] != "server" {
				continue
			}
			if len(l) < 3 || l[2] != l[1]+":8080" {
				t.Errorf("server line %v: want `server NAME NAME:8080`", l)
				continue
			}
			servers = append(servers, l[1])
		}
		slices.Sort(servers)
		if !slices.Equal(servers, nodes) {
			t.Errorf("servers %v, want the compose nodes %v", servers, nodes)
		}
	})
	t.Run("health-checks /readyz so a draining node leaves rotation", func(t *testing.T) {
		if l := directive(backend, "option", "httpchk"); !slices.Equal(l, []string{"option", "httpchk", "GET", "/readyz"}) {
			t.Errorf("option httpchk line %v, want GET /readyz", l)
		}
		ds := directive(backend, "default-server")
		if !slices.Contains(ds, "check") {
			t.Errorf("default-server %v does not enable checks", ds)
		}
		i := slices.Index(ds, "init-addr")
		if i < 0 || i+1 >= len(ds) || !strings.Contains(ds[i+1], "none") {
			t.Errorf("default-server %v: want init-addr ending in none, so HAProxy starts before the nodes resolve", ds)
		}
	})
	t.Run("balances by least connections without stickiness", func(t *testing.T) {
		if l := directive(backend, "balance"); !slices.Equal(l, []string{"balance", "leastconn"}) {
			t.Errorf("balance %v, want leastconn", l)
		}
		for _, sticky := range []string{"cookie", "stick", "stick-table"} {
			if l := directive(backend, sticky); l != nil {
				t.Errorf("%v: nodes are stateless, stickiness only unbalances them", l)
			}
		}
	})
	t.Run("keeps WebSockets open longer than the server's ping interval", func(t *testing.T) {
		l := directive(sections["defaults"], "timeout", "tunnel")
		if len(l) != 3 {
			t.Fatal("no timeout tunnel in defaults: WebSockets would be cut by timeout client/server")
		}
		d, err := haproxyDuration(l[2])
		if err != nil {
			t.Fatal(err)
		}
		if d <= serverPingInterval+5*time.Second {
			t.Errorf("timeout tunnel %v: want well over the %v ping interval", d, serverPingInterval)
		}
	})
	t.Run("retries a refused connection on another node", func(t *testing.T) {
		if directive(sections["defaults"], "option", "redispatch") == nil {
			t.Error("no option redispatch: a client reaching a node that just closed its listener sees an error")
		}
	})
	t.Run("listens on 8080", func(t *testing.T) {
		if l := directive(sections["frontend switchboard"], "bind"); !slices.Equal(l, []string{"bind", ":8080"}) {
			t.Errorf("frontend bind %v, want :8080", l)
		}
	})
	t.Run("is valid for haproxy -c", func(t *testing.T) {
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			t.Skip("haproxy is not installed (apt-get install haproxy): the syntax check did not run")
		}
		out, err := exec.Command(bin, "-c", "-f", filepath.Join(root(t), "deploy/haproxy.cfg")).CombinedOutput()
		if err != nil {
			t.Fatalf("haproxy -c: %v\n%s", err, out)
		}
	})
}

// --- deploy/kubernetes ------------------------------------------------------------------

type k8sMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sDeployment struct {
	Spec struct {
		Replicas int         `yaml:"replicas"`
		Selector k8sSelector `yaml:"selector"`
		Strategy struct {
			RollingUpdate struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name  string `yaml:"name"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env            []k8sEnvVar `yaml:"env"`
	ReadinessProbe *k8sProbe   `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe   `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
}

type k8sEnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

// fromSecret reports whether the variable is read from a Secret.
func (e k8sEnvVar) fromSecret() bool { return e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil }

type k8sSecret struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sService struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			TargetPort any `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Spec struct {
		Selector k8sSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// k8sObjects decodes every document of every manifest in deploy/kubernetes, by kind.
func k8sObjects(t testing.TB) map[string][]*yaml.Node {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "deploy/kubernetes/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	objects := map[string][]*yaml.Node{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			var meta k8sMeta
			if err := doc.Decode(&meta); err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if meta.APIVersion == "" || meta.Kind == "" {
				t.Fatalf("%s: a document without apiVersion or kind", filepath.Base(f))
			}
			objects[meta.Kind] = append(objects[meta.Kind], &doc)
		}
	}
	return objects
}

// one decodes the only object of a kind.
func one[T any](t testing.TB, objects map[string][]*yaml.Node, kind string) T {
	t.Helper()
	var v T
	if len(objects[kind]) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(objects[kind]), kind)
	}
	if err := objects[kind][0].Decode(&v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return v
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func TestKubernetesManifests(t *testing.T) {
	objects := k8sObjects(t)
	d := one[k8sDeployment](t, objects, "Deployment")
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	httpPort := map[string]int{}
	for _, p := range c.Ports {
		httpPort[p.Name] = p.ContainerPort
	}
	// portOf resolves a probe's or service's port, by name or number, to a container port.
	portOf := func(p any) int {
		switch p := p.(type) {
		case int:
			return p
		case string:
			return httpPort[p]
		}
		return 0
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}

	t.Run("runs three replicas, never fewer during a rollout", func(t *testing.T) {
		if d.Spec.Replicas != 3 {
			t.Errorf("replicas %d, want 3", d.Spec.Replicas)
		}
		if mu := fmt.Sprint(d.Spec.Strategy.RollingUpdate.MaxUnavailable); mu != "0" {
			t.Errorf("maxUnavailable %s, want 0", mu)
		}
		if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Error("the selector does not match the pod labels")
		}
	})
	t.Run("listens where the container port says", func(t *testing.T) {
		_, port, err := net.SplitHostPort(env["SWITCHBOARD_ADDR"])
		if err != nil || port != strconv.Itoa(httpPort["http"]) || httpPort["http"] != 8080 {
			t.Errorf("SWITCHBOARD_ADDR %q and container port http %d disagree (want 8080)", env["SWITCHBOARD_ADDR"], httpPort["http"])
		}
	})
	t.Run("probes readiness on /readyz and liveness on /healthz", func(t *testing.T) {
		for _, p := range []struct {
			name  string
			probe *k8sProbe
			path  string
		}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("no HTTP %s probe", p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path || portOf(p.probe.HTTPGet.Port) != 8080 {
				t.Errorf("%s probe %s on port %v, want %s on 8080", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path)
			}
		}
	})
	t.Run("leaves the endpoints before draining, and has time to drain", func(t *testing.T) {
		ps := c.Lifecycle.PreStop
		if ps == nil || ps.Sleep == nil || ps.Sleep.Seconds < 5 {
			t.Fatal("no preStop sleep of at least 5 s: SIGTERM would race the endpoint removal")
		}
		need := time.Duration(ps.Sleep.Seconds)*time.Second + drainTime
		if got := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; got <= need {
			t.Errorf("terminationGracePeriodSeconds %v, want more than preStop + drain = %v", got, need)
		}
	})
	t.Run("runs as non-root on a read-only root filesystem", func(t *testing.T) {
		sc := c.SecurityContext
		if !pod.SecurityContext.RunAsNonRoot || !sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("pod runAsNonRoot %v, container %+v", pod.SecurityContext.RunAsNonRoot, sc)
		}
	})
	t.Run("requests resources", func(t *testing.T) {
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
		}
	})
	t.Run("uses only environment variables the binary knows", func(t *testing.T) {
		for name := range env {
			if strings.HasPrefix(name, "SWITCHBOARD_") && !slices.Contains(deployEnv, name) {
				t.Errorf("the Deployment sets %s, which the binary does not read", name)
			}
		}
	})
	t.Run("takes its secrets from the example Secret's keys", func(t *testing.T) {
		secret := one[k8sSecret](t, objects, "Secret")
		for _, e := range c.Env {
			if !e.fromSecret() {
				if strings.Contains(e.Name, "SECRET") || strings.HasSuffix(e.Name, "_KEY") {
					t.Errorf("%s is set inline: secrets belong in the Secret", e.Name)
				}
				continue
			}
			r := e.ValueFrom.SecretKeyRef
			if _, ok := secret.StringData[r.Key]; r.Name != secret.Metadata.Name || !ok {
				t.Errorf("%s reads %s/%s, which the example Secret does not have", e.Name, r.Name, r.Key)
			}
		}
		for _, name := range []string{"SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_API_KEY", "SWITCHBOARD_REDIS"} {
			if !slices.ContainsFunc(c.Env, func(e k8sEnvVar) bool { return e.Name == name && e.fromSecret() }) {
				t.Errorf("%s does not come from the Secret", name)
			}
		}
	})
	t.Run("the Service reaches the pods' http port", func(t *testing.T) {
		s := one[k8sService](t, objects, "Service")
		if !subset(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
			t.Error("the Service selector does not match the pod labels")
		}
		if len(s.Spec.Ports) != 1 || portOf(s.Spec.Ports[0].TargetPort) != 8080 {
			t.Errorf("Service ports %+v, want one targeting the container's 8080", s.Spec.Ports)
		}
	})
	t.Run("a PodDisruptionBudget covers the pods", func(t *testing.T) {
		p := one[k8sPDB](t, objects, "PodDisruptionBudget")
		if !subset(p.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Error("the PodDisruptionBudget selector does not match the pod labels")
		}
	})
	t.Run("the kustomization applies everything but the example Secret", func(t *testing.T) {
		var k struct {
			Resources []string `yaml:"resources"`
		}
		if err := yaml.Unmarshal(readFile(t, "deploy/kubernetes/kustomization.yaml"), &k); err != nil {
			t.Fatal(err)
		}
		want := []string{"deployment.yaml", "pdb.yaml", "service.yaml"}
		got := slices.Sorted(slices.Values(k.Resources))
		if !slices.Equal(got, want) {
			t.Errorf("kustomization resources %v, want %v", got, want)
		}
	})
}

// --- Dockerfile and .dockerignore -------------------------------------------------------

// dockerInstruction is one Dockerfile instruction with its continuation lines joined.
type dockerInstruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func parseDockerfile(t testing.TB) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "Dockerfile")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// shellWords splits a RUN command the way sh would for plain words and quotes.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// goBuild is the `go build` the Dockerfile runs: its environment assignments and arguments.
type goBuild struct {
	env  []string
	args []string // after "go build"
}

// output returns the -o argument.
func (b goBuild) output() string {
	if i := slices.Index(b.args, "-o"); i >= 0 && i+1 < len(b.args) {
		return b.args[i+1]
	}
	return ""
}

func dockerGoBuild(t testing.TB, ins []dockerInstruction) goBuild {
	t.Helper()
	for _, in := range ins {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		var b goBuild
		words := shellWords(in.args)
		for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN flags: --mount=...
			words = words[1:]
		}
		for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
			b.env, words = append(b.env, words[0]), words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			t.Fatalf("RUN %s: want `[VAR=value ...] go build ...` alone", in.args)
		}
		b.args = words[2:]
		return b
	}
	t.Fatal("the Dockerfile runs no go build")
	return goBuild{}
}

// goDirective returns the go version of go.mod, as major.minor.
func goDirective(t testing.TB) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	args := map[string]string{}
	var froms []string
	var final []dockerInstruction // instructions of the last stage
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			if k, v, ok := strings.Cut(in.args, "="); ok {
				args[k] = v
			}
		case "FROM":
			from := in.args
			for k, v := range args {
				from = strings.ReplaceAll(from, "${"+k+"}", v)
			}
			froms = append(froms, from)
			final = nil
		default:
			final = append(final, in)
		}
	}
	build := dockerGoBuild(t, ins)
	has := func(cmd, args string) bool {
		return slices.Contains(final, dockerInstruction{cmd, args})
	}

	t.Run("builds with the Go of go.mod", func(t *testing.T) {
		want := "golang:" + goDirective(t) + " AS build"
		if len(froms) != 2 || froms[0] != want {
			t.Errorf("stages %q, want the builder %q and the final image", froms, want)
		}
	})
	t.Run("builds a static, trimmed cmd/switchboard", func(t *testing.T) {
		if !slices.Contains(build.env, "CGO_ENABLED=0") {
			t.Errorf("go build env %v, want CGO_ENABLED=0", build.env)
		}
		for _, a := range []string{"-trimpath", "-ldflags=-s -w"} {
			if !slices.Contains(build.args, a) {
				t.Errorf("go build %q lacks %q", build.args, a)
			}
		}
		if build.args[len(build.args)-1] != "./cmd/switchboard" {
			t.Errorf("go build %q does not build ./cmd/switchboard", build.args)
		}
	})
	t.Run("ships only the binary on distroless as nonroot", func(t *testing.T) {
		if len(froms) != 2 || froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
			t.Errorf("final stage %q, want gcr.io/distroless/static-debian12:nonroot", froms)
		}
		if !has("COPY", "--from=build "+build.output()+" /switchboard") {
			t.Errorf("the final stage does not copy %s to /switchboard", build.output())
		}
		if !has("ENTRYPOINT", `["/switchboard"]`) {
			t.Error(`no ENTRYPOINT ["/switchboard"]`)
		}
	})
	t.Run("listens on 0.0.0.0:8080 and exposes it", func(t *testing.T) {
		if !has("ENV", "SWITCHBOARD_ADDR=0.0.0.0:8080") || !has("EXPOSE", "8080") {
			t.Error("want ENV SWITCHBOARD_ADDR=0.0.0.0:8080 and EXPOSE 8080")
		}
	})
	t.Run("sets only environment variables the binary knows", func(t *testing.T) {
		for _, in := range final {
			name, _, _ := strings.Cut(in.args, "=")
			if in.cmd == "ENV" && strings.HasPrefix(name, "SWITCHBOARD_") && !slices.Contains(deployEnv, name) {
				t.Errorf("ENV %s: the binary does not read it", name)
			}
		}
	})
}

// dockerignore is a .dockerignore: patterns matched as Docker's build context does
// (filepath.Match per segment, ** across segments, a match on a parent directory excludes
// what is in it, the last matching pattern wins, ! re-includes).
type dockerignore []struct {
	re      *regexp.Regexp
	exclude bool
}

func parseDockerignore(t testing.TB, b []byte) dockerignore {
	t.Helper()
	var d dockerignore
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		exclude := !strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(strings.TrimPrefix(p, "!"))), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$")
		d = append(d, struct {
			re      *regexp.Regexp
			exclude bool
		}{regexp.MustCompile(re.String()), exclude})
	}
	return d
}

// ignores reports whether path (relative, slash-separated) is left out of the context.
func (d dockerignore) ignores(path string) bool {
	ignored := false
	for _, p := range d {
		if p.re.MatchString(path) {
			ignored = p.exclude
		}
	}
	return ignored
}

func TestDockerignore(t *testing.T) {
	dir := root(t)
	ignore := parseDockerignore(t, readFile(t, ".dockerignore"))

	t.Run("matches like Docker", func(t *testing.T) {
		d := parseDockerignore(t, []byte("*.md\n**/*_test.go\nweb/e2e\n!keep.md\n"))
		for path, want := range map[string]bool{
			"README.md": true, "keep.md": false, "docs/design.md": false,
			"service/api_test.go": true, "api_test.go": true, "service/api.go": false,
			"web/e2e/package.json": true, "web/e2e": true, "web/static/index.html": false,
		} {
			if got := d.ignores(path); got != want {
				t.Errorf("ignores(%q) = %v, want %v", path, got, want)
			}
		}
	})
	t.Run("keeps every file the build reads", func(t *testing.T) {
		cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/switchboard")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		needed := []string{"go.mod", "go.sum"}
		dec := json.NewDecoder(bytes.NewReader(out))
		for dec.More() {
			var p struct {
				Dir                 string
				GoFiles, EmbedFiles []string
				Module              *struct{ Main bool }
			}
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Module == nil || !p.Module.Main {
				continue
			}
			for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
				rel, err := filepath.Rel(dir, filepath.Join(p.Dir, f))
				if err != nil {
					t.Fatal(err)
				}
				needed = append(needed, filepath.ToSlash(rel))
			}
		}
		if len(needed) < 10 {
			t.Fatalf("go list found only %v", needed)
		}
		for _, f := range needed {
			if ignore.ignores(f) {
				t.Errorf(".dockerignore leaves out %s, which the build reads", f)
			}
		}
	})
	t.Run("leaves out the repository's history", func(t *testing.T) {
		if !ignore.ignores(".git/HEAD") {
			t.Error(".git is sent to the builder")
		}
	})
}

// --- the binary the image ships ---------------------------------------------------------

// buildLikeDockerfile runs the Dockerfile's go build into a temporary directory and returns
// the binary's path.
func buildLikeDockerfile(t testing.TB) string {
	t.Helper()
	build := dockerGoBuild(t, parseDockerfile(t))
	bin := filepath.Join(t.TempDir(), "switchboard")
	args := slices.Clone(build.args)
	args[slices.Index(args, "-o")+1] = bin
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), build.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary (about 30 s on a cold cache)")
	}
	bin := buildLikeDockerfile(t)

	t.Run("is static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("has a PT_INTERP: it needs a dynamic loader the image does not have")
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("needs shared libraries %v (%v)", libs, err)
		}
		if f.Section(".symtab") != nil {
			t.Error("has a symbol table: -ldflags=-s did not apply")
		}
	})
	t.Run("holds no build paths", func(t *testing.T) {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(root(t)+"/")) {
			t.Errorf("contains %s: -trimpath did not apply", root(t))
		}
	})
	t.Run("reads every environment variable the deployment files set", func(t *testing.T) {
		out, _ := exec.Command(bin, "--help").CombinedOutput() // exits 1 after printing usage
		known := regexp.MustCompile(`SWITCHBOARD_[A-Z_]+`).FindAllString(string(out), -1)
		if len(known) == 0 {
			t.Fatalf("--help names no environment variable:\n%s", out)
		}
		used := regexp.MustCompile(`SWITCHBOARD_[A-Z_]+`).FindAllString(
			string(readFile(t, "compose.yaml"))+string(readFile(t, "Dockerfile"))+
				string(readFile(t, "deploy/kubernetes/deployment.yaml")), -1)
		for _, name := range used {
			if !slices.Contains(known, name) {
				t.Errorf("%s is set by a deployment file but the binary's --help does not know it", name)
			}
		}
	})
}

// --- compose's topology, run here without containers ------------------------------------

// httpClient bounds every request a test makes, so that a stuck peer fails the test instead
// of hanging it.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a child process started by a test and ended by its cleanup.
type process struct {
	cmd    *exec.Cmd
	out    *testutil.LockedBuffer
	exited chan struct{}
	err    error // set before exited closes
}

func start(t testing.TB, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), out: &testutil.LockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(name), args, p.out)
		}
	})
	return p
}

// haproxyStatus returns the check status of every server of backend switchboard, from the
// stats page's CSV.
func haproxyStatus(statsAddr string) map[string]string {
	resp, err := httpClient.Get("http://" + statsAddr + "/;csv")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil
	}
	col := slices.Index(rows[0], "status")
	status := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col && row[0] == "switchboard" && strings.HasPrefix(row[1], "node") {
			status[row[1]] = row[col]
		}
	}
	return status
}

// TestComposeTopologyDrains runs what compose.yaml describes, without containers: Redis,
// the three nodes with compose's environment, and HAProxy with deploy/haproxy.cfg (its
// addresses swapped for loopback ones). A user connected through the load balancer keeps
// receiving while its node is sent SIGTERM: the node leaves HAProxy's rotation, closes the
// WebSocket with 1012, the client reconnects through HAProxy to another node and resumes,
// and every accepted message arrives once, in order.
func TestComposeTopologyDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Redis, three nodes and HAProxy")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy): the load balancer was not exercised")
	}
	bin := buildLikeDockerfile(t)
	redis := redistest.Start(t)
	compose := loadCompose(t)
	nodes := switchboardNodes(compose)

	// The nodes, with compose's environment but loopback addresses and the test's Redis.
	cfg := string(readFile(t, "deploy/haproxy.cfg"))
	procs := map[string]*process{} // by node id
	addrs := map[string]string{}   // by node id
	for _, n := range nodes {
		env := []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range compose.Services[n].Environment {
			env = append(env, k+"="+resolved(v))
		}
		id := resolved(compose.Services[n].Environment["SWITCHBOARD_NODE_ID"])
		addrs[id] = freeAddr(t)
		env = append(env, "SWITCHBOARD_ADDR="+addrs[id], "SWITCHBOARD_REDIS="+redis.URL())
		procs[id] = start(t, bin, env)
		line := fmt.Sprintf("server %s %s:8080", n, n)
		if !strings.Contains(cfg, line) {
			t.Fatalf("deploy/haproxy.cfg has no %q", line)
		}
		cfg = strings.Replace(cfg, line, fmt.Sprintf("server %s %s", n, addrs[id]), 1)
	}
	lbAddr, statsAddr := freeAddr(t), freeAddr(t)
	for old, repl := range map[string]string{
		"bind :8080":    "bind " + lbAddr,
		"bind :8404":    "bind " + statsAddr,
		"maxconn 50000": "maxconn 1000", // needs no raised file limit here
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("deploy/haproxy.cfg has no %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, haproxy, nil, "-db", "-f", cfgPath)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		st := haproxyStatus(statsAddr)
		return len(st) == len(nodes) && !slices.ContainsFunc(slices.Collect(maps.Values(st)), func(s string) bool { return s != "UP" })
	}, "HAProxy to see every node UP")

	env := compose.Services[nodes[0]].Environment
	apiKey := resolved(env["SWITCHBOARD_API_KEY"])
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(resolved(env["SWITCHBOARD_JWT_SECRET"])))
	if err != nil {
		t.Fatal(err)
	}

	client := &wsclient.Resumer{URL: func(_ int, since string) string {
		u := "ws://" + lbAddr + "/ws?token=" + token
		if since != "" {
			u += "&since=" + since
		}
		return u
	}}
	ctx, cancel := context.WithCancel(context.Background())
	clientDone := make(chan error, 1)
	go func() { clientDone <- client.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-clientDone
	})
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(client.Welcomes()) > 0 }, "the welcome through HAProxy")
	first := client.Welcomes()[0].Node

	// A backend posts through the load balancer all along, retrying what was not accepted.
	var mu sync.Mutex
	var accepted []string
	refused := 0
	stopSending := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stopSending:
				return
			case <-time.After(5 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+lbAddr+"/v1/users/alice/messages",
				strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := httpClient.Do(req)
			if err != nil {
				mu.Lock()
				refused++
				mu.Unlock()
				continue
			}
			var body struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			mu.Lock()
			if resp.StatusCode == http.StatusAccepted && body.ID != "" {
				accepted = append(accepted, body.ID)
			} else {
				refused++
			}
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stopSending:
		default:
			close(stopSending)
		}
		<-sent
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(client.Messages()) >= 20 }, "the first messages")

	drained := procs[first]
	termAt := time.Now()
	if err := drained.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drained.exited:
		if drained.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want 0", first, drained.err)
		}
		t.Logf("%s exited %v after SIGTERM", first, time.Since(termAt).Round(time.Millisecond))
	case <-time.After(drainTime + 5*time.Second):
		t.Fatalf("%s still runs %v after SIGTERM", first, drainTime+5*time.Second)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		w := client.Welcomes()
		return len(w) >= 2 && w[len(w)-1].Node != first
	}, "the client to resume on another node")
	testutil.WaitFor(t, 10*time.Second, func() bool {
		return strings.HasPrefix(haproxyStatus(statsAddr)[first], "DOWN")
	}, "HAProxy to take "+first+" out of rotation")
	mu.Lock()
	before := len(accepted)
	mu.Unlock()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= before+50
	}, "more messages accepted after the drain")
	close(stopSending)
	<-sent

	if closes := client.Closes(); !slices.Contains(closes, 1012) {
		t.Errorf("close codes %v, want 1012 from the draining node", closes)
	}
	if w := client.Welcomes(); w[len(w)-1].Recovered == nil || !*w[len(w)-1].Recovered {
		t.Errorf("the resumed welcome %+v is not recovered:true", w[len(w)-1])
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		got := map[string]bool{}
		for _, m := range client.Messages() {
			got[m.ID] = true
		}
		return !slices.ContainsFunc(accepted, func(id string) bool { return !got[id] })
	}, "every accepted message")
	seen := map[string]bool{}
	var last string
	for _, m := range client.Messages() {
		if seen[m.ID] {
			t.Errorf("message %s arrived twice", m.ID)
		}
		if last != "" && !idLess(last, m.ID) {
			t.Errorf("message %s arrived after %s", m.ID, last)
		}
		seen[m.ID], last = true, m.ID
	}
	t.Logf("%d messages accepted through HAProxy, %d sends not accepted (retried) while %s drained; %d delivered",
		len(accepted), refused, first, len(client.Messages()))
}

// idLess orders Redis stream ids (<ms>-<seq>).
func idLess(a, b string) bool {
	parse := func(id string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(id, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		s, _ := strconv.ParseUint(seq, 10, 64)
		return m, s
	}
	am, as := parse(a)
	bm, bs := parse(b)
	return am < bm || am == bm && as < bs
}
