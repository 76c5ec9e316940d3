package e2e

import (
	"encoding/json"
	"fmt"
	"go/version"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/internal/composefile"
	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// The Docker setup (docker-compose.yml, Dockerfile) runs for real in
// containers in compose/ (make compose-demo). These tests are its quick,
// engine-free half: the compose file configures the binaries only with
// settings they document and the README lists, through one environment
// block its services share; its services agree with each other and with
// the binaries' defaults; its images are pinned; and the binaries, run on
// the host with its very environment against a local etcd and Azurite,
// play the demo it promises.

// composeFile is docker-compose.yml, with the checks of these tests.
type composeFile struct{ composefile.File }

// loadCompose reads the repository's docker-compose.yml.
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	f, err := composefile.Load(testenv.RepoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return composeFile{f}
}

// binaryServices maps each binary of testenv.Binaries to the compose
// service built from it (its build target), failing the test if one has
// none.
func (c composeFile) binaryServices(t *testing.T) map[string]string {
	t.Helper()
	services := c.BuiltServices()
	for _, pkg := range testenv.Binaries {
		if _, ok := services[filepath.Base(pkg)]; !ok {
			t.Fatalf("docker-compose.yml has no service built with target %q", filepath.Base(pkg))
		}
	}
	return services
}

// setting returns what binary would use for env: the compose value if the
// service sets it, else the flag's default from --help.
func (c composeFile) setting(service string, help binaryHelp, env string) string {
	if v, ok := c.Services[service].Environment[env]; ok {
		return v
	}
	return help.defaultOf(env)
}

// helpFlag is one line of a binary's --help.
type helpFlag struct {
	name       string // without dashes
	defaultVal string // as --help shows it, unquoted; empty if it shows none
	envs       []string
}

// binaryHelp is the flags a binary documents in --help.
type binaryHelp []helpFlag

var (
	helpLine    = regexp.MustCompile(`^\s+--([a-z0-9_]+)(?:, -\w+)?(?: value)?\s{2,}(.*)$`)
	helpEnvs    = regexp.MustCompile(`\s*\[\$([^\]]+)\]$`)
	helpDefault = regexp.MustCompile(`\(default: (.*)\)$`)
)

// readHelp runs each binary with --help and parses what it prints.
func readHelp(t *testing.T) map[string]binaryHelp {
	t.Helper()
	bin := testenv.BuildBinaries(t)
	helps := make(map[string]binaryHelp)
	for _, pkg := range testenv.Binaries {
		name := filepath.Base(pkg)
		p := testenv.StartProcess(t, name, filepath.Join(bin, name), []string{"--help"}, nil)
		if code, err := p.Wait(clientTimeout); err != nil || code != 0 {
			t.Fatalf("%s --help: exit %d, %v\n%s", name, code, err, p.Output())
		}
		for _, line := range strings.Split(p.Stdout(), "\n") {
			m := helpLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			f := helpFlag{name: m[1]}
			rest := m[2]
			if e := helpEnvs.FindStringSubmatchIndex(rest); e != nil {
				for _, env := range strings.Split(rest[e[2]:e[3]], ", ") {
					f.envs = append(f.envs, strings.TrimPrefix(env, "$"))
				}
				rest = rest[:e[0]]
			}
			if d := helpDefault.FindStringSubmatch(rest); d != nil {
				f.defaultVal = d[1]
				if unquoted, err := strconv.Unquote(d[1]); err == nil {
					f.defaultVal = unquoted
				}
			}
			helps[name] = append(helps[name], f)
		}
		if len(helps[name]) == 0 {
			t.Fatalf("%s --help lists no flags I can read:\n%s", name, p.Stdout())
		}
	}
	return helps
}

// flagOf returns the flag that reads env, if any.
func (h binaryHelp) flagOf(env string) (helpFlag, bool) {
	for _, f := range h {
		if slices.Contains(f.envs, env) {
			return f, true
		}
	}
	return helpFlag{}, false
}

// defaultOf returns the default --help shows for the flag reading env.
func (h binaryHelp) defaultOf(env string) string {
	f, _ := h.flagOf(env)
	return f.defaultVal
}

// readmeSetting is one row of the README's Configuration table.
type readmeSetting struct {
	binaries []string
	flag     string // without dashes
	env      string
}

// readREADME returns the README and the rows of its Configuration table.
func readREADME(t *testing.T) (string, []readmeSetting) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	_, section, ok := strings.Cut(readme, "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	clients := []string{"client-pingpong", "client-stream", "client-azqueue-pub"}
	var rows []readmeSetting
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 7 || !strings.HasPrefix(strings.TrimSpace(cells[2]), "`--") {
			continue // not a row of the table, or its header
		}
		row := readmeSetting{
			flag: strings.TrimPrefix(strings.Trim(strings.TrimSpace(cells[2]), "`"), "--"),
			env:  strings.Trim(strings.TrimSpace(cells[3]), "`"),
		}
		switch who := strings.TrimSpace(cells[1]); who {
		case "all":
			row.binaries = append([]string{"server"}, clients...)
		case "all clients":
			row.binaries = clients
		default:
			for _, b := range strings.Split(who, ",") {
				row.binaries = append(row.binaries, strings.TrimSpace(b))
			}
		}
		rows = append(rows, row)
	}
	if len(rows) < 10 {
		t.Fatalf("read only %d rows of README.md's Configuration table", len(rows))
	}
	return readme, rows
}

// documented reports whether the README's table lists env for binary.
func documented(rows []readmeSetting, binary, env string) bool {
	for _, r := range rows {
		if r.env == env && slices.Contains(r.binaries, binary) {
			return true
		}
	}
	return false
}

// azureCredentialEnv is what the broker reads for its credentials, first
// match wins (README: "Azure credentials").
var azureCredentialEnv = []string{"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"}

func TestComposeEnvironmentIsDocumented(t *testing.T) {
	compose := loadCompose(t)
	helps := readHelp(t)
	readme, rows := readREADME(t)
	brokerEnv := make(map[string]bool)
	for _, s := range azqueue.Settings() {
		brokerEnv[s.Env] = true
	}

	// The README's table describes the binaries as they are.
	for _, r := range rows {
		for _, binary := range r.binaries {
			help, ok := helps[binary]
			if !ok {
				t.Errorf("README.md's Configuration table names %q, which is not a binary", binary)
				continue
			}
			f, ok := help.flagOf(r.env)
			if !ok || f.name != r.flag {
				t.Errorf("README.md's Configuration table: %s --%s reads %s, but %s --help does not say so", binary, r.flag, r.env, binary)
			}
		}
	}

	// Compose sets only what the binaries read and the README documents.
	for binary, service := range compose.binaryServices(t) {
		usesBroker := documented(rows, binary, "MICRO_BROKER")
		for env := range compose.Services[service].Environment {
			switch {
			case usesBroker && slices.Contains(azureCredentialEnv, env):
				if !strings.Contains(readme, "`"+env+"`") {
					t.Errorf("compose service %s sets %s, which README.md does not mention", service, env)
				}
			case usesBroker && brokerEnv[env]:
				// Checked against README.md by broker/azqueue's TestREADMESettingsTable.
			case !documented(rows, binary, env):
				t.Errorf("compose service %s sets %s, which README.md's Configuration table does not list for %s", service, env, binary)
			default:
				if _, ok := helps[binary].flagOf(env); !ok {
					t.Errorf("compose service %s sets %s, which %s --help does not list", service, env, binary)
				}
			}
		}
	}
}

func TestComposeServicesAgree(t *testing.T) {
	compose := loadCompose(t)
	helps := readHelp(t)
	services := compose.binaryServices(t)
	server := services["server"]
	publisher := services["client-azqueue-pub"]

	// The defaults of the binaries are the contract's names.
	for binary, want := range map[string]map[string]string{
		"server":             {"POC_TOPIC": example.EventsTopic},
		"client-azqueue-pub": {"POC_TOPIC": example.EventsTopic},
		"client-pingpong":    {"POC_SERVICE": example.ServiceName},
		"client-stream":      {"POC_SERVICE": example.ServiceName},
	} {
		for env, value := range want {
			if got := helps[binary].defaultOf(env); got != value {
				t.Errorf("%s --help: default of %s is %q, want %q", binary, env, got, value)
			}
		}
	}

	// The publisher publishes to the topic the server consumes.
	if s, p := compose.setting(server, helps["server"], "POC_TOPIC"), compose.setting(publisher, helps["client-azqueue-pub"], "POC_TOPIC"); s != p {
		t.Errorf("compose: the server consumes topic %q, client-azqueue-pub publishes to %q", s, p)
	}
	// The callers call the name the server registers.
	serverName := compose.Services[server].Environment["MICRO_SERVER_NAME"]
	if serverName == "" {
		serverName = example.ServiceName
	}
	for _, binary := range []string{"client-pingpong", "client-stream"} {
		if got := compose.setting(services[binary], helps[binary], "POC_SERVICE"); got != serverName {
			t.Errorf("compose: %s calls %q, the server registers as %q", binary, got, serverName)
		}
	}

	// The server registers an address the other containers can dial: its
	// compose host name and the port it listens on.
	env := compose.Services[server].Environment
	_, listenPort, err := net.SplitHostPort(env["MICRO_SERVER_ADDRESS"])
	if err != nil || listenPort == "0" {
		t.Errorf("compose: server MICRO_SERVER_ADDRESS=%q, want a fixed port on all interfaces such as :9090", env["MICRO_SERVER_ADDRESS"])
	}
	if want := net.JoinHostPort(server, listenPort); env["MICRO_SERVER_ADVERTISE"] != want {
		t.Errorf("compose: server MICRO_SERVER_ADVERTISE=%q, want %q", env["MICRO_SERVER_ADVERTISE"], want)
	}

	for binary, service := range services {
		svc := compose.Services[service]
		// Every service reaches etcd and Azurite by their compose names,
		// and starts after they are healthy.
		if addr, ok := svc.Environment["MICRO_REGISTRY_ADDRESS"]; ok {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("compose: %s MICRO_REGISTRY_ADDRESS=%q: %v", service, addr, err)
			}
			compose.checkHealthyDependency(t, service, host)
		}
		if cs, ok := svc.Environment["AZURE_STORAGE_CONNECTION_STRING"]; ok {
			endpoint, err := url.Parse(connectionStringValue(cs, "QueueEndpoint"))
			if err != nil || endpoint.Host == "" {
				t.Errorf("compose: %s AZURE_STORAGE_CONNECTION_STRING has no QueueEndpoint URL: %q", service, cs)
				continue
			}
			compose.checkHealthyDependency(t, service, endpoint.Hostname())
			if port := "--queuePort=" + endpoint.Port(); !slices.Contains(compose.Services[endpoint.Hostname()].Command, port) {
				t.Errorf("compose: %s's queue endpoint %s is not the port Azurite listens on (%s missing from its command)", service, endpoint, port)
			}
		}
		if binary == "server" {
			// Its health check asks its own /readyz, where it serves it.
			_, port, _ := strings.Cut(svc.Environment["POC_METRICS_ADDRESS"], ":")
			probe := "--probe=http://127.0.0.1:" + port + "/readyz"
			if port == "" || svc.Healthcheck == nil || !slices.Equal(svc.Healthcheck.Test, []string{"CMD", "/usr/local/bin/server", probe}) {
				t.Errorf("compose: %s needs POC_METRICS_ADDRESS and the health check [CMD /usr/local/bin/server %s]", service, probe)
			}
			continue
		}
		// The clients end (bounded counts) and wait for what they need
		// instead of racing it: the server's health check says it is
		// registered, and POC_WAIT covers a restart.
		if dep, ok := svc.DependsOn[server]; !ok || dep.Condition != "service_healthy" {
			t.Errorf("compose: %s must depend on %s (condition service_healthy) and wait for it with POC_WAIT", service, server)
		}
		if wait, err := time.ParseDuration(svc.Environment["POC_WAIT"]); err != nil || wait <= 0 {
			t.Errorf("compose: %s POC_WAIT=%q, want a positive duration", service, svc.Environment["POC_WAIT"])
		}
	}
	if count, err := strconv.Atoi(compose.Services[publisher].Environment["POC_COUNT"]); err != nil || count <= 0 {
		t.Errorf("compose: client-azqueue-pub POC_COUNT=%q, want a positive count so that its run ends", compose.Services[publisher].Environment["POC_COUNT"])
	}
}

// checkHealthyDependency checks that service starts only once the compose
// service dependency passes its health check: it depends on it with
// condition service_healthy, or on a service that starts only then (the
// clients start with the server, which waits for etcd and Azurite).
func (c composeFile) checkHealthyDependency(t *testing.T, service, dependency string) {
	t.Helper()
	dep, ok := c.Services[dependency]
	switch {
	case !ok:
		t.Errorf("compose: %s uses host %q, which is no compose service", service, dependency)
	case dep.Healthcheck == nil || len(dep.Healthcheck.Test) == 0:
		t.Errorf("compose: %s has no health check, so %s cannot wait for it", dependency, service)
	case !c.startsAfterHealthy(service, dependency, len(c.Services)):
		t.Errorf("compose: %s must depend on %s with condition service_healthy (or on a service that does)", service, dependency)
	}
}

// startsAfterHealthy reports whether service starts after dependency is
// healthy, following at most depth links of depends_on.
func (c composeFile) startsAfterHealthy(service, dependency string, depth int) bool {
	if depth == 0 {
		return false
	}
	for name, dep := range c.Services[service].DependsOn {
		if name == dependency && dep.Condition == "service_healthy" {
			return true
		}
		if c.startsAfterHealthy(name, dependency, depth-1) {
			return true
		}
	}
	return false
}

// connectionStringValue returns the value of key in an Azure Storage
// connection string.
func connectionStringValue(cs, key string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// pinnedTag matches image references with an exact version tag.
var pinnedTag = regexp.MustCompile(`^[a-z0-9./_-]+:v?\d+\.\d+\.\d+$`)

func TestComposeImagesArePinned(t *testing.T) {
	compose := loadCompose(t)
	root := testenv.RepoRoot(t)

	// The services we do not build run official images at exact versions:
	// Azurite the one the local runs use, etcd of a line whose v3 API the
	// go-micro etcd client (v3.3) speaks: 3.4 (the local runs' Debian
	// etcd) to 3.6 (the compose demo's, run in compose/).
	var tools struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "tools", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &tools); err != nil {
		t.Fatalf("parse tools/package.json: %v", err)
	}
	for name, svc := range compose.Services {
		if svc.Build != nil {
			continue
		}
		if !pinnedTag.MatchString(svc.Image) {
			t.Errorf("compose: %s runs image %q, want an exact version tag", name, svc.Image)
		}
		if svc.Healthcheck == nil {
			t.Errorf("compose: %s has no health check", name)
		}
	}
	if want := "mcr.microsoft.com/azure-storage/azurite:" + tools.Dependencies["azurite"]; compose.Services["azurite"].Image != want {
		t.Errorf("compose: azurite runs %q, want %q (the version in tools/package.json)", compose.Services["azurite"].Image, want)
	}
	if etcd := compose.Services["etcd"].Image; !regexp.MustCompile(`^gcr\.io/etcd-development/etcd:v3\.[456]\.\d+$`).MatchString(etcd) {
		t.Errorf("compose: etcd runs %q, want an official etcd image of the v3.4, v3.5 or v3.6 line", etcd)
	}

	// Every binary's image is a stage of the Dockerfile, which builds with
	// the Go of go.mod and pulls only images with pinned tags.
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goLine, goVersion string
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod); m != nil {
		goLine = string(m[1])
	}
	if m := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(dockerfile); m != nil {
		goVersion = string(m[1])
	}
	// A release of the go line's language version, at or above the line
	// (go 1.26.0 asks for 1.26.0 or later 1.26 releases).
	image, line := "go"+goVersion, "go"+goLine
	if goLine == "" || goVersion == "" || version.Lang(image) != version.Lang(line) || version.Compare(image, line) < 0 {
		t.Errorf("Dockerfile's ARG GO_VERSION=%q is not a release of go.mod's go %q", goVersion, goLine)
	}
	stages := make(map[string]bool)
	for _, m := range regexp.MustCompile(`(?m)^FROM (\S+)(?: AS (\S+))?$`).FindAllStringSubmatch(string(dockerfile), -1) {
		image, stage := m[1], m[2]
		pinned := stages[image] || strings.Contains(image, "${GO_VERSION}") ||
			(strings.Contains(image, ":") && !strings.HasSuffix(image, ":latest"))
		if !pinned {
			t.Errorf("Dockerfile: FROM %s is neither an earlier stage nor an image with a pinned tag", image)
		}
		stages[stage] = true
	}
	for binary, service := range compose.binaryServices(t) {
		if !stages[binary] {
			t.Errorf("Dockerfile has no stage %q for compose service %s", binary, service)
		}
		if want := "poc-go-micro/" + binary + ":latest"; compose.Services[service].Image != want {
			t.Errorf("compose: %s is tagged %q, want %q (what make docker-build tags)", service, compose.Services[service].Image, want)
		}
	}
}

// TestComposeEnvironmentRunsTheDemoOnTheHost runs what `docker-compose
// up` runs, without Docker: the binaries with the environment
// docker-compose.yml gives them (the shared block included, so every
// binary gets MICRO_BROKER=azqueue and the Azure credentials), all started
// at once, against a local etcd and Azurite standing in for the compose
// services. Host names of compose services become the local addresses;
// nothing else changes.
func TestComposeEnvironmentRunsTheDemoOnTheHost(t *testing.T) {
	compose := loadCompose(t)
	services := compose.binaryServices(t)
	s := newStack(t)

	serverEnv := compose.Services[services["server"]].Environment
	azuriteURL, err := url.Parse(s.azurite.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	queueURL, err := url.Parse(connectionStringValue(serverEnv["AZURE_STORAGE_CONNECTION_STRING"], "QueueEndpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if queueURL.Host == "" {
		t.Fatalf("compose: the server's connection string has no QueueEndpoint URL")
	}
	serverAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for _, name := range []string{"MICRO_REGISTRY_ADDRESS", "MICRO_SERVER_ADVERTISE"} {
		if serverEnv[name] == "" {
			t.Fatalf("compose: the server does not set %s", name)
		}
	}
	local := strings.NewReplacer(
		serverEnv["MICRO_REGISTRY_ADDRESS"], s.etcd.Endpoint(),
		queueURL.Host, azuriteURL.Host,
		serverEnv["MICRO_SERVER_ADVERTISE"], serverAddr,
	)
	envOf := func(binary string) []string {
		var env []string
		for k, v := range compose.Services[services[binary]].Environment {
			env = append(env, k+"="+local.Replace(v))
		}
		// Where the container listens on all its interfaces, the test
		// listens on loopback only.
		if binary == "server" {
			env = append(env, "MICRO_SERVER_ADDRESS="+serverAddr, fmt.Sprintf("POC_METRICS_ADDRESS=127.0.0.1:%d", testenv.FreePort(t)))
		}
		return env
	}

	// docker-compose starts the server and the clients together once etcd
	// and Azurite are healthy.
	server := testenv.StartProcess(t, "server", s.bin+"/server", nil, envOf("server"))
	clients := make(map[string]*testenv.Process)
	for _, binary := range []string{"client-pingpong", "client-stream", "client-azqueue-pub"} {
		clients[binary] = testenv.StartProcess(t, binary, s.bin+"/"+binary, nil, envOf(binary))
	}

	// What the README's "Run it in Docker" says each client prints.
	want, err := compose.ClientOutputs()
	if err != nil {
		t.Fatal(err)
	}
	for binary, p := range clients {
		code, err := p.Wait(startTimeout + clientTimeout)
		if err != nil || code != 0 {
			t.Errorf("%s: exit %d, %v\n%s", binary, code, err, p.Output())
			continue
		}
		for _, w := range want[binary] {
			if !strings.Contains(p.Stdout(), w) {
				t.Errorf("%s stdout lacks %q:\n%s", binary, w, p.Stdout())
			}
		}
		assertClean(t, binary, p)
	}
	if t.Failed() {
		return
	}

	events, err := compose.PublishedEvents()
	if err != nil {
		t.Fatal(err)
	}
	for _, event := range events {
		server.WaitForOutput(t, fmt.Sprintf("received event %q", event), eventTimeout)
	}
	// docker-compose down (or Ctrl-C on up) stops the server with SIGTERM.
	stopServer(t, server, len(events))
}

// sharedSettings are the settings every service of a stack has, which
// docker-compose.yml's x-environment block must hold.
var sharedSettings = []string{"MICRO_REGISTRY", "MICRO_REGISTRY_ADDRESS", "MICRO_BROKER"}

// TestComposeSharesOneEnvironment checks the shape users write compose
// files in: the settings every service has (registry, broker, Azure
// credentials) in one block that every service merges unchanged.
func TestComposeSharesOneEnvironment(t *testing.T) {
	compose := loadCompose(t)
	for _, name := range sharedSettings {
		if compose.Shared[name] == "" {
			t.Errorf("docker-compose.yml: x-environment lacks %s", name)
		}
	}
	credentials := 0
	for name := range compose.Shared {
		if slices.Contains(azureCredentialEnv, name) {
			credentials++
		}
	}
	if credentials == 0 {
		t.Errorf("docker-compose.yml: x-environment has no Azure credentials (one of %v)", azureCredentialEnv)
	}
	for binary, service := range compose.binaryServices(t) {
		env := compose.Services[service].Environment
		for name, value := range compose.Shared {
			if env[name] != value {
				t.Errorf("compose: %s (%s) sets %s=%q, not the shared %q: merge x-environment unchanged", service, binary, name, env[name], value)
			}
		}
	}
}

// TestRPCClientsIgnoreTheBrokerTheyDoNotUse runs the RPC clients the way a
// stack's shared environment configures them, MICRO_BROKER=azqueue set,
// with and without usable Azure credentials: they never connect the
// broker, so neither may make them fail.
func TestRPCClientsIgnoreTheBrokerTheyDoNotUse(t *testing.T) {
	s := newStack(t)
	s.startServer()
	noCredentials := []string{"MICRO_BROKER=azqueue"}
	for _, name := range azureCredentialEnv {
		noCredentials = append(noCredentials, name+"=")
	}
	tests := []struct {
		name string
		env  []string
	}{
		{"with the stack's credentials", []string{"MICRO_BROKER=azqueue", "AZURE_STORAGE_CONNECTION_STRING=" + s.azurite.ConnectionString()}},
		{"with no credentials at all", noCredentials},
		{"with a malformed connection string", []string{"MICRO_BROKER=azqueue", "AZURE_STORAGE_CONNECTION_STRING=not a connection string"}},
	}
	for _, tt := range tests {
		for client, args := range map[string][]string{
			"client-pingpong": {"--rounds=2"},
			"client-stream":   {"--count=3", "--duplex", "--strokes=3"},
		} {
			t.Run(tt.name+"/"+client, func(t *testing.T) {
				p := testenv.StartProcess(t, client, s.bin+"/"+client, s.args(append(args, "--service="+s.service)...), tt.env)
				if code, err := p.Wait(clientTimeout); err != nil || code != 0 {
					t.Fatalf("%s with %v: exit %d, %v\n%s", client, tt.env, code, err, p.Output())
				}
				assertClean(t, client, p)
			})
		}
	}
}
