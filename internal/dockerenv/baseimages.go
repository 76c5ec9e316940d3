package dockerenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v2"
)

var (
	// dockerfileArg matches a global ARG with a default: ARG NAME=value.
	dockerfileArg = regexp.MustCompile(`(?im)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)\s*$`)
	// dockerfileFrom matches FROM [--platform=...] image [AS stage].
	dockerfileFrom = regexp.MustCompile(`(?im)^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$`)
	// dockerfileVar matches ${NAME} and $NAME in a FROM line.
	dockerfileVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
)

// DockerfileBaseImages returns the images a Dockerfile builds FROM: not
// its own stages, not scratch, with ARG defaults substituted.
func DockerfileBaseImages(dockerfile string) ([]string, error) {
	args := make(map[string]string)
	for _, m := range dockerfileArg.FindAllStringSubmatch(dockerfile, -1) {
		if _, ok := args[m[1]]; !ok {
			args[m[1]] = strings.Trim(m[2], `"`)
		}
	}
	stages := make(map[string]bool)
	var images []string
	for _, m := range dockerfileFrom.FindAllStringSubmatch(dockerfile, -1) {
		var unknown error
		image := dockerfileVar.ReplaceAllStringFunc(m[1], func(v string) string {
			name := strings.Trim(v, "${}")
			value, ok := args[name]
			if !ok {
				unknown = fmt.Errorf("FROM %s: ARG %s has no default", m[1], name)
			}
			return value
		})
		if unknown != nil {
			return nil, unknown
		}
		if !stages[strings.ToLower(image)] && image != "scratch" {
			images = appendNew(images, image)
		}
		if m[2] != "" {
			stages[strings.ToLower(m[2])] = true
		}
	}
	return images, nil
}

// ComposeImages returns the images of the services of a compose file that
// it does not build.
func ComposeImages(composeFile []byte) ([]string, error) {
	var c struct {
		Services map[string]struct {
			Image string      `yaml:"image"`
			Build interface{} `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(composeFile, &c); err != nil {
		return nil, fmt.Errorf("read the compose file: %w", err)
	}
	var images []string
	for _, svc := range c.Services {
		if svc.Build == nil && svc.Image != "" {
			images = appendNew(images, svc.Image)
		}
	}
	sort.Strings(images)
	return images, nil
}

// ProjectBaseImages returns every image the Dockerfile and the
// docker-compose.yml in root need from a registry: the Dockerfile's base
// images first (in its order), then the compose file's.
func ProjectBaseImages(root string) ([]string, error) {
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	images, err := DockerfileBaseImages(string(dockerfile))
	if err != nil {
		return nil, fmt.Errorf("Dockerfile: %w", err)
	}
	composeFile, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		return nil, err
	}
	services, err := ComposeImages(composeFile)
	if err != nil {
		return nil, fmt.Errorf("docker-compose.yml: %w", err)
	}
	for _, image := range services {
		images = appendNew(images, image)
	}
	return images, nil
}

// appendNew appends s to list unless it is there already.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
