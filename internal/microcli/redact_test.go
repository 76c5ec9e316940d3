package microcli

import (
	"strings"
	"testing"

	"github.com/micro/cli/v2"
)

func TestHelpRedactsCredentialsFromFlagValues(t *testing.T) {
	redactHelp()
	tests := []struct {
		name, value string
		want        string // in the help line
		secret      string // never in it
	}{
		{"SAS URL", "https://acct.queue.core.windows.net/?sv=2020-08-04&sig=SECRETSIG", `"https://acct.queue.core.windows.net/?REDACTED"`, "SECRETSIG"},
		{"user info", "http://user:SECRETPASS@etcd:2379", `"http://REDACTED@etcd:2379"`, "SECRETPASS"},
		{"list with one SAS URL", "http://a:1,http://b:2/?sig=SECRETSIG", `"http://a:1,http://b:2/?REDACTED"`, "SECRETSIG"},
		{"connection string", "AccountName=a;AccountKey=SECRETKEY", `"REDACTED"`, "SECRETKEY"},
		{"plain URL", "http://127.0.0.1:10001/devstoreaccount1", `"http://127.0.0.1:10001/devstoreaccount1"`, ""},
		{"plain value", "example.events", `"example.events"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := cli.FlagStringer(&cli.StringFlag{Name: "x", Usage: `a "quoted" usage`, Value: tt.value, EnvVars: []string{"X"}})
			if !strings.Contains(line, "(default: "+tt.want+")") {
				t.Errorf("help line %q lacks the default %s", line, tt.want)
			}
			if tt.secret != "" && strings.Contains(line, tt.secret) {
				t.Errorf("help line %q shows the secret", line)
			}
			if !strings.Contains(line, `a "quoted" usage`) || !strings.Contains(line, "[$X]") {
				t.Errorf("help line %q lost its usage or variable", line)
			}
		})
	}
}
