package azqueue

import (
	"fmt"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Environment variables read for credentials when no credential option is
// given, in this order: the connection string, then the account name with
// a key or a SAS token (the Azure CLI's names), then the account name
// alone, which selects Microsoft Entra ID through azidentity's
// DefaultAzureCredential (configured by its own AZURE_* variables).
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
	case account != "":
		return defaultTokenCredentials(account)
	}
	return Credentials{}, fmt.Errorf("azqueue: no credentials: set %s (e.g. UseDevelopmentStorage=true for Azurite), or %s with %s or %s, or %s alone for Microsoft Entra ID, or pass azqueue.ConnectionString",
		EnvConnectionString, EnvAccount, EnvKey, EnvSASToken, EnvAccount)
}

// defaultTokenCredentials authenticates as account with the credential
// azidentity chooses from the environment: environment credentials
// (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET), workload
// identity (AZURE_FEDERATED_TOKEN_FILE), managed identity (AZURE_CLIENT_ID
// picks a user-assigned one), then the Azure CLI; AZURE_TOKEN_CREDENTIALS
// narrows the chain. Whether any of them works shows at Connect, when the
// first token is fetched.
func defaultTokenCredentials(account string) (Credentials, error) {
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions: azcore.ClientOptions{Retry: identityRetries},
	})
	if err != nil {
		return Credentials{}, fmt.Errorf("azqueue: %s for Microsoft Entra ID: %s", EnvAccount, oneLine(err))
	}
	return tokenCredentials(EnvAccount, account, cred)
}
