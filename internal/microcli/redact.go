package microcli

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/micro/cli/v2"
)

// Redacted stands in, in --help, for a credential a flag's value carried.
const Redacted = "REDACTED"

var (
	// quoted matches the %q-quoted strings of a help line, among them the
	// "(default: ...)" value, which micro/cli takes from the environment
	// when a flag's variable is set: MICRO_BROKER_ADDRESS holding an Azure
	// "SAS URL" would otherwise be printed with its signature.
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// secretPart matches the parts of connection strings and query strings
	// that carry credentials.
	secretPart = regexp.MustCompile(`(?i)\b(accountkey|sharedaccesssignature|sig|password|token|secret)=`)
)

var redactHelpOnce sync.Once

// redactHelp makes micro/cli's help show flag values without the
// credentials they may carry.
func redactHelp() {
	redactHelpOnce.Do(func() {
		plain := cli.FlagStringer
		cli.FlagStringer = func(f cli.Flag) string { return redactLine(plain(f)) }
	})
}

// redactLine redacts the credentials in the quoted values of a help line.
func redactLine(line string) string {
	return quoted.ReplaceAllStringFunc(line, func(q string) string {
		v, err := strconv.Unquote(q)
		if err != nil {
			return q
		}
		if r := redactValue(v); r != v {
			return strconv.Quote(r)
		}
		return q
	})
}

// redactValue redacts each comma-separated element of a flag value: a
// URL's user info and query, or a whole element that looks like a
// connection string or query string with a credential in it.
func redactValue(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.Host != "" && (u.User != nil || u.RawQuery != "") {
			if u.User != nil {
				u.User = url.User(Redacted)
			}
			if u.RawQuery != "" {
				u.RawQuery = Redacted
			}
			parts[i] = u.String()
			continue
		}
		if secretPart.MatchString(p) {
			parts[i] = Redacted
		}
	}
	return strings.Join(parts, ",")
}
