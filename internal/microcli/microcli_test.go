package microcli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/micro/cli/v2"
	"github.com/micro/go-micro/v2"
	"github.com/micro/go-micro/v2/broker/memory"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/config/cmd"
	rmemory "github.com/micro/go-micro/v2/registry/memory"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"
)

// notExited marks a case in which the program must not have been ended.
const notExited = -1

func TestInit(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		applyErr    error
		subcommand  string
		wantProceed bool
		wantExit    int
		wantTopic   string
		wantStderr  string
	}{
		{
			name:        "defaults",
			wantProceed: true,
			wantExit:    notExited,
			wantTopic:   "default.topic",
		},
		{
			name:        "flag",
			args:        []string{"--topic=from.flag"},
			wantProceed: true,
			wantExit:    notExited,
			wantTopic:   "from.flag",
		},
		{
			name:        "env",
			env:         map[string]string{"POC_TEST_TOPIC": "from.env"},
			wantProceed: true,
			wantExit:    notExited,
			wantTopic:   "from.env",
		},
		{
			name:        "flag beats env",
			args:        []string{"--topic", "from.flag"},
			env:         map[string]string{"POC_TEST_TOPIC": "from.env"},
			wantProceed: true,
			wantExit:    notExited,
			wantTopic:   "from.flag",
		},
		{
			name:       "stray argument",
			args:       []string{"--topic", "a", "b"},
			wantExit:   1,
			wantStderr: `unexpected argument "b"`,
		},
		{
			name:       "apply fails",
			applyErr:   errors.New("--topic must not be empty"),
			wantExit:   1,
			wantStderr: "--topic must not be empty",
		},
		{
			name:       "subcommand handled the command line",
			args:       []string{"version"},
			subcommand: "version",
			wantExit:   notExited,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			exitCode := fakeExit(t)
			setArgs(t, tt.args...)

			var topic string
			service := newTestService(&cli.StringFlag{
				Name:        "topic",
				EnvVars:     []string{"POC_TEST_TOPIC"},
				Value:       "default.topic",
				Destination: &topic,
			})
			app := service.Options().Cmd.App()
			var stderr bytes.Buffer
			app.Writer, app.ErrWriter = io.Discard, &stderr
			if tt.subcommand != "" {
				app.Commands = append(app.Commands, &cli.Command{
					Name:   tt.subcommand,
					Action: func(*cli.Context) error { return nil },
				})
			}

			applied := false
			proceed := Init(service, func(*cli.Context) error {
				applied = true
				return tt.applyErr
			})

			if proceed != tt.wantProceed {
				t.Errorf("Init() = %v, want %v", proceed, tt.wantProceed)
			}
			if *exitCode != tt.wantExit {
				t.Errorf("exit code = %d, want %d (%d means no exit)", *exitCode, tt.wantExit, notExited)
			}
			if tt.wantProceed && !applied {
				t.Error("apply was not called")
			}
			if tt.wantTopic != "" && topic != tt.wantTopic {
				t.Errorf("topic = %q, want %q", topic, tt.wantTopic)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// newTestService returns a service with its own command line and
// in-memory plugins, so that cases neither share flags nor touch the
// network.
func newTestService(flags ...cli.Flag) micro.Service {
	return micro.NewService(
		micro.Cmd(cmd.NewCmd()),
		micro.Server(grpcserver.NewServer()),
		micro.Client(grpcclient.NewClient()),
		micro.Broker(memory.NewBroker()),
		micro.Registry(rmemory.NewRegistry()),
		micro.Flags(flags...),
	)
}

// setArgs makes args the command line Init parses, for the duration of the
// test.
func setArgs(t *testing.T, args ...string) {
	t.Helper()
	saved := os.Args
	os.Args = append([]string{"microcli-test"}, args...)
	t.Cleanup(func() { os.Args = saved })
}

// fakeExit replaces micro/cli's os.Exit for the duration of the test and
// returns where the exit code it was called with is stored.
func fakeExit(t *testing.T) *int {
	t.Helper()
	code := notExited
	saved := cli.OsExiter
	cli.OsExiter = func(c int) { code = c }
	t.Cleanup(func() { cli.OsExiter = saved })
	return &code
}
