package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// selfSignedCertLifetime is how long a test certificate is valid: far
// longer than any test, short enough to be worthless if it leaked.
const selfSignedCertLifetime = 24 * time.Hour

// selfSignedCert is a certificate for 127.0.0.1 and localhost that is its
// own root: a server presents it, and clients trust exactly it, without
// touching the machine's trust store.
type selfSignedCert struct {
	certFile string // PEM certificate, what SSL_CERT_FILE of a child points at
	keyFile  string // PEM PKCS #8 private key
	pool     *x509.CertPool
}

// writeSelfSignedCert makes an ECDSA P-256 certificate valid from a minute
// ago (a clock read a moment later must not find it not yet valid) for
// selfSignedCertLifetime, and writes it and its key into dir.
func writeSelfSignedCert(dir string) (*selfSignedCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "testenv 127.0.0.1", Organization: []string{"poc-go-micro testenv"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(selfSignedCertLifetime),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		// IsCA lets the certificate be its own trust anchor: Go and
		// OpenSSL then accept a pool or SSL_CERT_FILE holding only it.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the certificate just made: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	c := &selfSignedCert{
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
		pool:     x509.NewCertPool(),
	}
	c.pool.AddCert(cert)
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return c, nil
}

// transport returns a new transport that trusts only this certificate and
// uses no proxy: an HTTPS_PROXY of the environment must not see test
// traffic, and a request to any other HTTPS server fails verification.
func (c *selfSignedCert) transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.TLSClientConfig = &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
	return t
}
