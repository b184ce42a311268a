package tenancy_test

import (
	"os"
	"testing"

	"github.com/tenantry/tenantry/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
