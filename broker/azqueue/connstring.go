package azqueue

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Well-known settings of the local storage emulator (Azurite), which
// "UseDevelopmentStorage=true" stands for. The key is public.
const (
	DevelopmentAccountName   = "devstoreaccount1"
	DevelopmentAccountKey    = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	DevelopmentQueueEndpoint = "http://127.0.0.1:10001/devstoreaccount1"
)

// defaultEndpointSuffix is the DNS suffix of Azure's public cloud.
const defaultEndpointSuffix = "core.windows.net"

// Credentials say where a queue service is and how to sign requests to it.
// Exactly one of AccountKey, SAS and Token is set. Its String method never
// shows the secrets.
type Credentials struct {
	// Endpoint is the queue service URL, without a SAS query.
	Endpoint *url.URL
	// AccountName is the storage account; required with AccountKey.
	AccountName string
	// AccountKey is the base64 shared key.
	AccountKey string
	// SAS is a shared access signature query string, without the leading '?'.
	SAS string
	// Token gets Microsoft Entra ID tokens for StorageScope.
	Token azcore.TokenCredential
}

// String describes the credentials without their secrets.
func (c Credentials) String() string {
	kind := "anonymous"
	switch {
	case c.AccountKey != "":
		kind = "shared key"
	case c.SAS != "":
		kind = "SAS"
	case c.Token != nil:
		kind = "Entra ID token"
	}
	endpoint := "<none>"
	if c.Endpoint != nil {
		endpoint = c.Endpoint.Redacted()
	}
	return fmt.Sprintf("%s for account %q at %s", kind, c.AccountName, endpoint)
}

// GoString keeps %#v from printing the secrets.
func (c Credentials) GoString() string { return "azqueue.Credentials{" + c.String() + "}" }

// connection-string keys, compared case-insensitively.
const (
	csProtocol       = "defaultendpointsprotocol"
	csAccountName    = "accountname"
	csAccountKey     = "accountkey"
	csSAS            = "sharedaccesssignature"
	csQueueEndpoint  = "queueendpoint"
	csEndpointSuffix = "endpointsuffix"
	csDevelopment    = "usedevelopmentstorage"
)

// otherServiceKeys are parts of connection strings the Azure portal hands
// out that concern other storage services: accepted and ignored.
var otherServiceKeys = map[string]bool{
	"blobendpoint": true, "fileendpoint": true, "tableendpoint": true,
	"blobsecondaryendpoint": true, "filesecondaryendpoint": true,
	"tablesecondaryendpoint": true, "queuesecondaryendpoint": true,
}

// ParseConnectionString parses an Azure Storage connection string such as
// "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=...;EndpointSuffix=core.windows.net"
// or "UseDevelopmentStorage=true". Keys are case-insensitive. Errors name the
// offending part but never repeat a value.
func ParseConnectionString(s string) (Credentials, error) {
	parts, err := splitConnectionString("connection string", s)
	if err != nil {
		return Credentials{}, err
	}
	return buildCredentials("connection string", parts)
}

// buildCredentials turns connection-string parts (lower-cased keys) into
// credentials; source names where they came from in error messages.
func buildCredentials(source string, parts map[string]string) (Credentials, error) {
	fail := func(format string, args ...interface{}) (Credentials, error) {
		return Credentials{}, fmt.Errorf("azqueue: "+source+": "+format, args...)
	}
	if dev, ok := parts[csDevelopment]; ok {
		if !strings.EqualFold(dev, "true") {
			return fail("UseDevelopmentStorage must be true when present")
		}
		if len(parts) > 1 {
			return fail("UseDevelopmentStorage=true cannot be combined with other parts")
		}
		endpoint, _ := url.Parse(DevelopmentQueueEndpoint)
		return Credentials{Endpoint: endpoint, AccountName: DevelopmentAccountName, AccountKey: DevelopmentAccountKey}, nil
	}

	c := Credentials{AccountName: parts[csAccountName], AccountKey: parts[csAccountKey], SAS: strings.TrimPrefix(parts[csSAS], "?")}
	switch {
	case c.AccountKey != "" && c.SAS != "":
		return fail("give AccountKey or SharedAccessSignature, not both")
	case c.AccountKey == "" && c.SAS == "":
		return fail("AccountKey or SharedAccessSignature is required")
	case c.AccountKey != "" && c.AccountName == "":
		return fail("AccountName is required with AccountKey")
	}
	if c.AccountKey != "" {
		if _, err := base64.StdEncoding.DecodeString(c.AccountKey); err != nil {
			return fail("AccountKey is not valid base64")
		}
	}
	if c.SAS != "" {
		if _, err := url.ParseQuery(c.SAS); err != nil {
			return fail("SharedAccessSignature is not a valid query string")
		}
	}

	if raw, ok := parts[csQueueEndpoint]; ok {
		endpoint, err := parseEndpoint(raw)
		if err != nil {
			return fail("QueueEndpoint: %v", err)
		}
		c.Endpoint = endpoint
		return c, nil
	}
	endpoint, err := accountEndpoint(c.AccountName, parts[csProtocol], parts[csEndpointSuffix])
	if err != nil {
		return fail("%v", err)
	}
	c.Endpoint = endpoint
	return c, nil
}

// tokenCredentials authenticates as account with Entra ID tokens from
// source, at the account's queue endpoint in Azure's public cloud.
func tokenCredentials(origin, account string, source azcore.TokenCredential) (Credentials, error) {
	if source == nil {
		return Credentials{}, fmt.Errorf("azqueue: %s: the token credential is nil", origin)
	}
	endpoint, err := accountEndpoint(account, "", "")
	if err != nil {
		return Credentials{}, fmt.Errorf("azqueue: %s: %w", origin, err)
	}
	return Credentials{Endpoint: endpoint, AccountName: account, Token: source}, nil
}

// accountEndpoint returns an account's queue endpoint from its name, the
// protocol (https when empty) and the DNS suffix of its cloud (the public
// cloud's when empty).
func accountEndpoint(account, protocol, suffix string) (*url.URL, error) {
	if account == "" {
		return nil, errors.New("AccountName or QueueEndpoint is required")
	}
	if !validAccountName(account) {
		return nil, errors.New("AccountName must be 3-24 lowercase letters and digits")
	}
	protocol = strings.ToLower(protocol)
	switch protocol {
	case "":
		protocol = "https"
	case "http", "https":
	default:
		return nil, errors.New("DefaultEndpointsProtocol must be http or https")
	}
	if suffix == "" {
		suffix = defaultEndpointSuffix
	}
	endpoint, err := parseEndpoint(fmt.Sprintf("%s://%s.queue.%s", protocol, account, suffix))
	if err != nil {
		return nil, errors.New("EndpointSuffix does not form a valid URL")
	}
	return endpoint, nil
}

// validAccountName reports whether name is a possible storage account name.
func validAccountName(name string) bool {
	if len(name) < 3 || len(name) > 24 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// splitConnectionString splits "k1=v1;k2=v2;" into lower-cased keys and
// values, rejecting unknown keys, duplicates and parts without '='.
func splitConnectionString(source, s string) (map[string]string, error) {
	fail := func(format string, args ...interface{}) (map[string]string, error) {
		return nil, fmt.Errorf("azqueue: "+source+": "+format, args...)
	}
	if strings.TrimSpace(s) == "" {
		return fail("empty")
	}
	parts := make(map[string]string)
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		eq := strings.IndexByte(part, '=')
		if eq <= 0 {
			return fail("part %d is not of the form Key=Value", i+1)
		}
		name := strings.TrimSpace(part[:eq])
		key := strings.ToLower(name)
		if !knownConnectionStringKey(key) {
			if !plausibleName(name) {
				// Probably a pasted secret rather than a name: do not echo it.
				return fail("part %d has an unknown name", i+1)
			}
			return fail("unknown part %q", name)
		}
		if _, dup := parts[key]; dup {
			return fail("%s is given twice", name)
		}
		value := strings.TrimSpace(part[eq+1:])
		if value == "" {
			return fail("%s has an empty value", name)
		}
		if !otherServiceKeys[key] {
			parts[key] = value
		}
	}
	return parts, nil
}

func knownConnectionStringKey(key string) bool {
	switch key {
	case csProtocol, csAccountName, csAccountKey, csSAS, csQueueEndpoint, csEndpointSuffix, csDevelopment:
		return true
	}
	return otherServiceKeys[key]
}

// plausibleName reports whether an unknown part's name looks like a
// misspelt key (short, letters only), which is safe to echo, rather than a
// fragment of a secret.
func plausibleName(name string) bool {
	if len(name) > 40 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// parseEndpoint checks that raw is an absolute http(s) URL without a query.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("not an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("must not carry a query or user info: give credentials separately")
	}
	return u, nil
}
