//go:build faults

package faults

import (
	"testing"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m, writeReport) }
