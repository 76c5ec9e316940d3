package azqueue

import (
	"strings"
	"testing"
)

// testKey is a syntactically valid account key that is easy to spot if it
// ever leaks into an error.
const testKey = "c2VjcmV0LWtleS1kby1ub3QtbGVhaw=="

func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		endpoint string
		account  string
		key      string
		sas      string
	}{
		{"development storage", "UseDevelopmentStorage=true", DevelopmentQueueEndpoint, DevelopmentAccountName, DevelopmentAccountKey, ""},
		{"development storage any case", "usedevelopmentstorage=TRUE;", DevelopmentQueueEndpoint, DevelopmentAccountName, DevelopmentAccountKey, ""},
		{"account and key", "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=" + testKey + ";EndpointSuffix=core.windows.net",
			"https://acct1.queue.core.windows.net", "acct1", testKey, ""},
		{"default protocol and suffix", "AccountName=acct1;AccountKey=" + testKey, "https://acct1.queue.core.windows.net", "acct1", testKey, ""},
		{"http and sovereign cloud", "DefaultEndpointsProtocol=http;AccountName=acct1;AccountKey=" + testKey + ";EndpointSuffix=core.chinacloudapi.cn",
			"http://acct1.queue.core.chinacloudapi.cn", "acct1", testKey, ""},
		{"explicit endpoint", "AccountName=devstoreaccount1;AccountKey=" + testKey + ";QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1",
			"http://127.0.0.1:10001/devstoreaccount1", "devstoreaccount1", testKey, ""},
		{"sas with endpoint", "QueueEndpoint=https://acct1.queue.core.windows.net/;SharedAccessSignature=sv=2020-08-04&ss=q&sig=abc%3D",
			"https://acct1.queue.core.windows.net/", "", "", "sv=2020-08-04&ss=q&sig=abc%3D"},
		{"sas with leading question mark", "AccountName=acct1;SharedAccessSignature=?sv=1&sig=x",
			"https://acct1.queue.core.windows.net", "acct1", "", "sv=1&sig=x"},
		{"portal string with other services", "BlobEndpoint=https://a.blob.core.windows.net/;QueueEndpoint=https://a.queue.core.windows.net/;FileEndpoint=https://a.file.core.windows.net/;TableEndpoint=https://a.table.core.windows.net/;SharedAccessSignature=sv=1&sig=x",
			"https://a.queue.core.windows.net/", "", "", "sv=1&sig=x"},
		{"spaces around parts", " AccountName = acct1 ; AccountKey = " + testKey + " ; ", "https://acct1.queue.core.windows.net", "acct1", testKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConnectionString(tt.in)
			if err != nil {
				t.Fatalf("ParseConnectionString: %v", err)
			}
			if got := c.Endpoint.String(); got != tt.endpoint {
				t.Errorf("endpoint = %q, want %q", got, tt.endpoint)
			}
			if c.AccountName != tt.account || c.AccountKey != tt.key || c.SAS != tt.sas {
				t.Errorf("got account %q key %q sas %q, want %q %q %q", c.AccountName, c.AccountKey, c.SAS, tt.account, tt.key, tt.sas)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // part of the error message
	}{
		{"empty", "", "empty"},
		{"only separators", " ; ;", "AccountKey or SharedAccessSignature is required"},
		{"unknown part", "AccountName=a1b;AcountKey=" + testKey, `unknown part "AcountKey"`},
		{"pasted key without name", "AccountName=acct1;" + testKey, "part 2 has an unknown name"},
		{"part without equals", "AccountName=acct1;justtext", "part 2 is not of the form Key=Value"},
		{"long unknown name is not echoed", "AccountName=acct1;" + strings.Repeat("x", 50) + "=1", "part 2 has an unknown name"},
		{"duplicate", "AccountName=acct1;AccountName=acct2;AccountKey=" + testKey, "AccountName is given twice"},
		{"empty value", "AccountName=;AccountKey=" + testKey, "AccountName has an empty value"},
		{"key and sas", "AccountName=acct1;AccountKey=" + testKey + ";SharedAccessSignature=sv=1", "not both"},
		{"key without account", "AccountKey=" + testKey + ";QueueEndpoint=http://127.0.0.1:1/x", "AccountName is required with AccountKey"},
		{"key not base64", "AccountName=acct1;AccountKey=not*base64", "AccountKey is not valid base64"},
		{"bad protocol", "DefaultEndpointsProtocol=ftp;AccountName=acct1;AccountKey=" + testKey, "DefaultEndpointsProtocol must be http or https"},
		{"bad account name", "AccountName=Bad_Name;AccountKey=" + testKey, "AccountName must be 3-24 lowercase letters and digits"},
		{"relative endpoint", "AccountName=acct1;AccountKey=" + testKey + ";QueueEndpoint=127.0.0.1:10001", "QueueEndpoint: not an absolute http(s) URL"},
		{"endpoint with query", "AccountName=acct1;AccountKey=" + testKey + ";QueueEndpoint=https://h/?sig=" + testKey, "must not carry a query"},
		{"dev storage false", "UseDevelopmentStorage=false", "UseDevelopmentStorage must be true"},
		{"dev storage combined", "UseDevelopmentStorage=true;AccountName=acct1", "cannot be combined"},
		{"no account nor endpoint", "SharedAccessSignature=sv=1&sig=x", "AccountName or QueueEndpoint is required"},
		{"bad sas", "AccountName=acct1;SharedAccessSignature=a=%zz", "SharedAccessSignature is not a valid query string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConnectionString(tt.in)
			if err == nil {
				t.Fatalf("ParseConnectionString(%q) succeeded, want an error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "sig=") {
				t.Errorf("error %q leaks a secret", err)
			}
		})
	}
}

func TestCredentialsStringHidesSecrets(t *testing.T) {
	for _, in := range []string{
		"AccountName=acct1;AccountKey=" + testKey,
		"AccountName=acct1;SharedAccessSignature=sv=1&sig=" + testKey,
	} {
		c, err := ParseConnectionString(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{c.String(), c.GoString()} {
			if strings.Contains(s, testKey) {
				t.Errorf("%q leaks the secret", s)
			}
			if !strings.Contains(s, "acct1") {
				t.Errorf("%q does not name the account", s)
			}
		}
	}
}

// FuzzParseConnectionString checks that no input panics and that errors
// never repeat an AccountKey or SharedAccessSignature value.
func FuzzParseConnectionString(f *testing.F) {
	for _, seed := range []string{
		"UseDevelopmentStorage=true",
		"DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=" + testKey + ";EndpointSuffix=core.windows.net",
		"QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;SharedAccessSignature=sv=1&sig=x",
		"AccountName=acct1;AccountKey=" + testKey + ";AccountKey=" + testKey,
		";;=;=x;x=",
		"AccountName=acct1;AccountKey=%%%",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			for _, part := range strings.Split(s, ";") {
				name, value, ok := strings.Cut(part, "=")
				name = strings.ToLower(strings.TrimSpace(name))
				value = strings.TrimSpace(value)
				if ok && (name == "accountkey" || name == "sharedaccesssignature") && len(value) >= 8 && strings.Contains(err.Error(), value) {
					t.Fatalf("error %q repeats the secret %q", err, value)
				}
			}
			return
		}
		if c.Endpoint == nil || c.Endpoint.Host == "" {
			t.Fatalf("success without an endpoint host: %#v", c)
		}
		if (c.AccountKey == "") == (c.SAS == "") {
			t.Fatalf("success needs exactly one of key and SAS: %#v", c)
		}
	})
}
