package azqueue

import (
	"fmt"
	"os"
)

// Environment variables read for credentials when no credential option is
// given, in this order: the connection string, then the account name with
// a key or a SAS token (the Azure CLI's names).
const (
	EnvConnectionString = "AZURE_STORAGE_CONNECTION_STRING"
	EnvAccount          = "AZURE_STORAGE_ACCOUNT"
	EnvKey              = "AZURE_STORAGE_KEY"
	EnvSASToken         = "AZURE_STORAGE_SAS_TOKEN"
)

// credentials resolves the credentials: options, then environment, with
// broker.Addrs replacing the endpoint.
func (b *Broker) credentials() (Credentials, error) {
	var creds Credentials
	var err error
	if source, ok := b.opts.Context.Value(credentialsKey).(credentialSource); ok {
		creds, err = source()
	} else {
		creds, err = credentialsFromEnv()
	}
	if err != nil {
		return Credentials{}, err
	}
	switch len(b.opts.Addrs) {
	case 0:
	case 1:
		endpoint, err := parseEndpoint(b.opts.Addrs[0])
		if err != nil {
			return Credentials{}, fmt.Errorf("azqueue: broker address: %w (want the queue endpoint, e.g. https://account.queue.core.windows.net)", err)
		}
		creds.Endpoint = endpoint
	default:
		return Credentials{}, fmt.Errorf("azqueue: broker address: one queue endpoint expected, got %d", len(b.opts.Addrs))
	}
	return creds, nil
}

func credentialsFromEnv() (Credentials, error) {
	if s := os.Getenv(EnvConnectionString); s != "" {
		parts, err := splitConnectionString(EnvConnectionString, s)
		if err != nil {
			return Credentials{}, err
		}
		return buildCredentials(EnvConnectionString, parts)
	}
	account := os.Getenv(EnvAccount)
	key, sas := os.Getenv(EnvKey), os.Getenv(EnvSASToken)
	switch {
	case account != "" && key != "":
		return buildCredentials(EnvAccount+"/"+EnvKey, map[string]string{csAccountName: account, csAccountKey: key})
	case account != "" && sas != "":
		return buildCredentials(EnvAccount+"/"+EnvSASToken, map[string]string{csAccountName: account, csSAS: sas})
	}
	return Credentials{}, fmt.Errorf("azqueue: no credentials: set %s (e.g. UseDevelopmentStorage=true for Azurite), or %s with %s or %s, or pass azqueue.ConnectionString",
		EnvConnectionString, EnvAccount, EnvKey, EnvSASToken)
}
