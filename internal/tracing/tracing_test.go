package tracing

import (
	"strings"
	"testing"
)

func TestExporterFromEnvExportsToZipkinOnlyWhenAsked(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"nothing set: no exporter", nil, "", ""},
		{"none", map[string]string{EnvExporter: "none"}, "", ""},
		{"zipkin", map[string]string{EnvExporter: "zipkin"}, "zipkin", ""},
		{"zipkin among others", map[string]string{EnvExporter: "none, zipkin"}, "zipkin", ""},
		{"the Zipkin endpoint alone selects Zipkin", map[string]string{EnvZipkinEndpoint: "http://127.0.0.1:9411/api/v2/spans"}, "zipkin", ""},
		{"none wins over the Zipkin endpoint", map[string]string{EnvExporter: "none", EnvZipkinEndpoint: "http://127.0.0.1:9411/api/v2/spans"}, "", ""},
		{"otlp is refused with what to do", map[string]string{EnvExporter: "otlp"}, "", "exports to zipkin only"},
		{"an OTLP endpoint alone is refused, not ignored", map[string]string{envOTLPEndpoint: "http://collector:4318"}, "", "set OTEL_TRACES_EXPORTER=zipkin"},
		{"an OTLP traces endpoint alone is refused", map[string]string{envOTLPTraces: "http://collector:4318/v1/traces"}, "", "no OTLP exporter"},
		{"an explicit exporter wins over an OTLP endpoint", map[string]string{EnvExporter: "zipkin", envOTLPEndpoint: "http://collector:4318"}, "zipkin", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvExporter, EnvZipkinEndpoint, envOTLPEndpoint, envOTLPTraces} {
				t.Setenv(k, tt.env[k])
			}
			got, err := exporterFromEnv()
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "tracing: ")):
				t.Errorf("error %v, want one saying %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case got != tt.want:
				t.Errorf("exporter %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetupWithoutAnExporterRecordsNothing(t *testing.T) {
	for _, k := range []string{EnvExporter, EnvZipkinEndpoint, envOTLPEndpoint, envOTLPTraces} {
		t.Setenv(k, "")
	}
	tr, err := Setup("test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled || tr.Shutdown == nil {
		t.Errorf("Setup without an exporter: %+v, want disabled with a Shutdown that does nothing", tr)
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}
