package pgstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
)

// The operator takes a DSN without a password (--inventory) and the
// password from PGPASSWORD (a secretKeyRef in the manifests) or a
// PGPASSFILE, so the password never sits in the Pod's arguments, where
// anyone who may get Pods or read the process table sees it. pgx reads
// both when the DSN has no password; these tests hold that contract.
const dbPassword = "pw-from-a-secretKeyRef-7f3a"

func TestPasswordFromPGPASSWORD(t *testing.T) {
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("PGPASSWORD", dbPassword)
	cfg, err := pgxpool.ParseConfig("postgres://smaregi@db.example:5432/smaregi?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.Password != dbPassword {
		t.Fatalf("a DSN without password did not take PGPASSWORD (got %d bytes)", len(cfg.ConnConfig.Password))
	}
}

func TestPasswordFromPGPASSFILE(t *testing.T) {
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("db.example:5432:smaregi:smaregi:"+dbPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", passfile)
	cfg, err := pgxpool.ParseConfig("postgres://smaregi@db.example:5432/smaregi?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.Password != dbPassword {
		t.Fatalf("a DSN without password did not take the PGPASSFILE entry (got %d bytes)", len(cfg.ConnConfig.Password))
	}
}

// TestOpenWithPasswordFromTheEnvironment opens the real PostgreSQL with a
// password-less DSN and PGPASSWORD set. The test server trusts 127.0.0.1, so
// this shows the configuration is accepted end to end, not that the server
// checked the password (TestPasswordFromPGPASSWORD shows it is sent).
func TestOpenWithPasswordFromTheEnvironment(t *testing.T) {
	dsn := freshDatabase(t)
	t.Setenv("PGPASSWORD", dbPassword)
	s, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open %s with PGPASSWORD: %v", inventory.RedactURL(dsn), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordNeverInErrorsOrLogs: the errors of a failed Open (which the
// operator logs) and the DSN as the operator logs it (inventory.RedactURL)
// carry no password, wherever it was given.
func TestPasswordNeverInErrorsOrLogs(t *testing.T) {
	t.Setenv("PGPASSWORD", dbPassword)
	for _, dsn := range []string{
		"postgres://smaregi@127.0.0.1:1/smaregi?sslmode=disable&connect_timeout=5",
		"postgres://smaregi:" + dbPassword + "@127.0.0.1:1/smaregi?sslmode=disable&connect_timeout=5",
		"postgres://smaregi@127.0.0.1:1/smaregi?sslmode=disable&connect_timeout=5&password=" + dbPassword,
	} {
		if got := inventory.RedactURL(dsn); strings.Contains(got, dbPassword) {
			t.Errorf("RedactURL keeps the password: %s", got)
		}
		_, err := pgstore.Open(context.Background(), dsn)
		if err == nil {
			t.Fatalf("open of a closed port succeeded")
		}
		if strings.Contains(err.Error(), dbPassword) {
			t.Errorf("the error of a failed Open carries the password: %v", err)
		}
	}
}
