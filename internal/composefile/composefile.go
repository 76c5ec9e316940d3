// Package composefile reads the repository's docker-compose.yml for the
// tests of the Docker demo, on the host (e2e) and in containers (compose):
// its services, the environment block they share, and what the demo's
// clients print with the settings it gives them.
package composefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v2"
)

// Name is the compose file's name in the repository root.
const Name = "docker-compose.yml"

// File is what the tests read of a compose file.
type File struct {
	// Shared is the x-environment block: the settings every service of
	// the stack merges into its environment.
	Shared   map[string]string  `yaml:"x-environment"`
	Services map[string]Service `yaml:"services"`
}

// Service is one service of a compose file.
type Service struct {
	Image           string                `yaml:"image"`
	Build           *Build                `yaml:"build"`
	Command         []string              `yaml:"command"`
	Environment     map[string]string     `yaml:"environment"`
	DependsOn       map[string]Dependency `yaml:"depends_on"`
	Healthcheck     *Healthcheck          `yaml:"healthcheck"`
	StopGracePeriod string                `yaml:"stop_grace_period"`
}

// Build is how a service's image is built.
type Build struct {
	Context string            `yaml:"context"`
	Target  string            `yaml:"target"`
	Args    map[string]string `yaml:"args"`
}

// Dependency is one entry of a service's depends_on.
type Dependency struct {
	Condition string `yaml:"condition"`
}

// Healthcheck is a service's health check.
type Healthcheck struct {
	Test []string `yaml:"test"`
}

// Load reads the compose file in root.
func Load(root string) (File, error) {
	raw, err := os.ReadFile(filepath.Join(root, Name))
	if err != nil {
		return File{}, err
	}
	var f File
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return File{}, fmt.Errorf("parse %s: %w", Name, err)
	}
	return f, nil
}

// BuiltServices maps the build target of every service built from the
// Dockerfile (the binary it ships) to the service's name.
func (f File) BuiltServices() map[string]string {
	services := make(map[string]string)
	for name, svc := range f.Services {
		if svc.Build != nil {
			services[svc.Build.Target] = name
		}
	}
	return services
}

// Env returns the value the compose file gives variable name in service.
func (f File) Env(service, name string) (string, error) {
	v, ok := f.Services[service].Environment[name]
	if !ok {
		return "", fmt.Errorf("%s: service %s does not set %s", Name, service, name)
	}
	return v, nil
}

// ClientOutputs returns, by build target, what each client's output
// contains when it runs with the compose file's settings: the lines the
// README's "Run it in Docker" shows.
func (f File) ClientOutputs() (map[string][]string, error) {
	services := f.BuiltServices()
	var err error
	env := func(binary, name string) string {
		v, e := f.Env(services[binary], name)
		if err == nil {
			err = e
		}
		return v
	}
	outputs := map[string][]string{
		"client-pingpong": {
			"greeting: Hello " + env("client-pingpong", "POC_NAME") + "\n",
			fmt.Sprintf("pingpong: %[1]s/%[1]s strokes echoed", env("client-pingpong", "POC_ROUNDS")),
		},
		"client-stream": {
			fmt.Sprintf("stream: received %[1]s/%[1]s in ", env("client-stream", "POC_COUNT")),
			fmt.Sprintf("duplex: %[1]s/%[1]s strokes in order in ", env("client-stream", "POC_STROKES")),
		},
		"client-azqueue-pub": {
			fmt.Sprintf("total: %s events published to %q (broker azqueue)", env("client-azqueue-pub", "POC_COUNT"), env("client-azqueue-pub", "POC_TOPIC")),
		},
	}
	return outputs, err
}

// PublishedEvents returns the texts of the events client-azqueue-pub
// publishes with the compose file's settings, in order: "<say> #<n>".
func (f File) PublishedEvents() ([]string, error) {
	publisher := f.BuiltServices()["client-azqueue-pub"]
	say, err := f.Env(publisher, "POC_SAY")
	if err != nil {
		return nil, err
	}
	raw, err := f.Env(publisher, "POC_COUNT")
	if err != nil {
		return nil, err
	}
	count, err := strconv.Atoi(raw)
	if err != nil || count <= 0 {
		return nil, fmt.Errorf("%s: %s POC_COUNT=%q, want a positive count", Name, publisher, raw)
	}
	events := make([]string, count)
	for i := range events {
		events[i] = fmt.Sprintf("%s #%d", say, i+1)
	}
	return events, nil
}
